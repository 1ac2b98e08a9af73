"""Tiny synthetic subjects with a known label layout, for tests (not the realistic simulator).

A fixture head is a set of nested ellipsoids on a small grid: background (0),
scalp (258, non-brain), a CSF rim (24), cortex (3/42, left/right), white matter
(wmparc 3001/4001 above the centre, 5001/5002 below), ventricles (4/43), a
thalamus (10/49), a vessel (30) and a cerebellum (8/47 cortex around 7/46 white
matter).  The brain mask is everything inside the CSF rim.  T1w and T2w are
class-wise constants with a little Gaussian noise, so every one of the paper's
eight classes is present and the expected volumes follow from the label map.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from .subjects import HCP_FOLDER, HCP_NAMES

LAYOUTS = ("hcp", "hcp-flat", "bids", "csv")

# code: (T1w, T2w) relative intensity
_CONTRAST = {
    0: (0.0, 0.0),
    258: (0.9, 0.5),
    24: (0.3, 1.6),
    3: (0.75, 0.85),
    42: (0.75, 0.85),
    2: (1.0, 0.6),
    41: (1.0, 0.6),
    3001: (1.0, 0.6),
    4001: (1.0, 0.6),
    5001: (1.0, 0.6),
    5002: (1.0, 0.6),
    4: (0.3, 1.6),
    43: (0.3, 1.6),
    10: (0.85, 0.7),
    49: (0.85, 0.7),
    30: (0.5, 0.4),
    8: (0.8, 0.8),
    47: (0.8, 0.8),
    7: (0.95, 0.62),
    46: (0.95, 0.62),
}


@dataclass
class FixtureSubject:
    t1: np.ndarray
    t2: np.ndarray
    seg: np.ndarray
    mask: np.ndarray
    affine: np.ndarray


def make_subject(shape=(40, 48, 36), seed: int = 0, voxel_size: float = 1.5, scale: float = 500.0) -> FixtureSubject:
    """One fixture head (arrays in RAS order, axial = last axis)."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(-1.1, 1.1, n) for n in shape], indexing="ij")
    x, y, z = grids
    r = np.sqrt(x**2 + y**2 + z**2)
    left = x < 0
    seg = np.zeros(shape, np.int32)
    seg[r < 1.0] = 258
    seg[r < 0.85] = 24
    seg[r < 0.8] = np.where(left, 3, 42)[r < 0.8]
    wm = r < 0.62
    seg[wm] = np.where(z > 0, np.where(left, 3001, 4001), np.where(left, 5001, 5002))[wm]
    seg[(np.abs(x) < 0.3) & (np.abs(y) < 0.15) & (np.abs(z) < 0.15)] = np.where(left, 4, 43)[
        (np.abs(x) < 0.3) & (np.abs(y) < 0.15) & (np.abs(z) < 0.15)
    ]
    thalamus = (np.abs(np.abs(x) - 0.25) < 0.12) & (np.abs(y + 0.25) < 0.12) & (np.abs(z) < 0.12)
    seg[thalamus] = np.where(left, 10, 49)[thalamus]
    seg[(np.abs(x) < 0.05) & (np.abs(z - 0.3) < 0.05) & (np.abs(y) < 0.5)] = 30
    cerebellum = (r < 0.8) & (z < -0.35) & (y < -0.2)
    seg[cerebellum] = np.where(left, 8, 47)[cerebellum]
    cerebellum_wm = cerebellum & (r < 0.65)
    seg[cerebellum_wm] = np.where(left, 7, 46)[cerebellum_wm]
    mask = (r < 0.85).astype(np.uint8)

    t1 = np.zeros(shape, np.float32)
    t2 = np.zeros(shape, np.float32)
    for code, (c1, c2) in _CONTRAST.items():
        t1[seg == code], t2[seg == code] = c1, c2
    gain = scale * rng.uniform(0.9, 1.1)
    noise = 0.02 * (seg > 0)
    t1 = gain * (t1 + noise * rng.standard_normal(shape))
    t2 = gain * (t2 + noise * rng.standard_normal(shape))
    affine = np.diag([voxel_size, voxel_size, voxel_size, 1.0])
    affine[:3, 3] = -voxel_size * (np.array(shape) - 1) / 2
    return FixtureSubject(t1.astype(np.float32), t2.astype(np.float32), seg, mask, affine)


def save_nifti(array: np.ndarray, affine: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return path


def write_subject(
    root: str | Path, subject_id: str, subject: FixtureSubject, layout: str = "hcp", with_t2: bool = True
) -> dict[str, Path]:
    """Write one fixture subject under ``root`` in ``layout``; returns the files by role.

    For ``csv`` the files go to ``root/files/`` and the caller writes the manifest
    (:func:`write_manifest`).
    """
    root = Path(root)
    hcp_names = tuple(HCP_NAMES[role] for role in ("t1", "t2", "seg", "mask"))
    if layout == "hcp":
        folder, names = root / subject_id / HCP_FOLDER, hcp_names
    elif layout == "hcp-flat":
        folder, names = root / subject_id, hcp_names
    elif layout == "bids":
        folder = root / f"sub-{subject_id}" / "anat"
        prefix = f"sub-{subject_id}"
        names = (f"{prefix}_T1w", f"{prefix}_T2w", None, None)
    elif layout == "csv":
        folder = root / "files"
        names = tuple(f"{subject_id}_{role}" for role in ("t1", "t2", "seg", "mask"))
    else:
        raise ValueError(f"unknown fixture layout {layout!r}; choose one of {LAYOUTS}")
    files = {"t1": save_nifti(subject.t1, subject.affine, folder / f"{names[0]}.nii.gz")}
    if with_t2:
        files["t2"] = save_nifti(subject.t2, subject.affine, folder / f"{names[1]}.nii.gz")
    if layout == "bids":
        derived = root / "derivatives" / "freesurfer" / f"sub-{subject_id}" / "anat"
        files["seg"] = save_nifti(subject.seg, subject.affine, derived / f"sub-{subject_id}_desc-wmparc_dseg.nii.gz")
        files["mask"] = save_nifti(subject.mask, subject.affine, derived / f"sub-{subject_id}_desc-brain_mask.nii.gz")
    else:
        files["seg"] = save_nifti(subject.seg, subject.affine, folder / f"{names[2]}.nii.gz")
        files["mask"] = save_nifti(subject.mask, subject.affine, folder / f"{names[3]}.nii.gz")
    return files


def write_manifest(path: str | Path, rows: dict[str, dict[str, Path]]) -> Path:
    """A CSV manifest (``subject,t1,t2,seg,mask``, paths relative to it) for written subjects."""
    path = Path(path)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["subject", "t1", "t2", "seg", "mask"])
        for subject_id, files in rows.items():
            writer.writerow(
                [subject_id]
                + [
                    files[role].relative_to(path.parent).as_posix() if role in files else ""
                    for role in ("t1", "t2", "seg", "mask")
                ]
            )
    return path


def write_dataset(
    root: str | Path, n_subjects: int = 3, layout: str = "hcp", shape=(40, 48, 36), seed: int = 0
) -> Path:
    """``n_subjects`` fixture subjects under ``root``; returns what to pass to ``prepare``."""
    root = Path(root)
    rows = {}
    for i in range(n_subjects):
        subject_id = f"{i + 1:03d}"
        rows[subject_id] = write_subject(root, subject_id, make_subject(shape, seed + i), layout)
    if layout == "csv":
        return write_manifest(root / "manifest.csv", rows)
    return root
