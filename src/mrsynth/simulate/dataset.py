"""Simulated datasets on disk: subjects written in the HCP layout, and their figure (``mrsynth simulate``).

Subjects are written as ``OUT/<subject>/T1w/{T1w_acpc_dc,T2w_acpc_dc,wmparc,brainmask_fs}.nii.gz``
with a ``simulation.json`` of every parameter, so every other command treats them like
HCP subjects.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from ..atomic import building_folder
from ..errors import InputError
from ..io.subjects import HCP_FOLDER, HCP_NAMES
from ..logs import bar, log
from .anatomy import Anatomy, default_anatomy, label_map_anatomy, label_map_paths
from .subject import SimulatedSubject, Variation, simulate_subject

#: The HCP file role of each simulated volume.
VOLUME_ROLES = {"t1": "t1", "t2": "t2", "codes": "seg", "mask": "mask"}


def write_hcp_subject(subject: SimulatedSubject, out: Path, subject_id: str) -> Path:
    """Write ``out/<id>/T1w/*.nii.gz`` and ``simulation.json`` atomically (temp folder + rename)."""
    final = Path(out) / subject_id
    with building_folder(final) as temporary:
        folder = temporary / HCP_FOLDER
        folder.mkdir()
        for attribute, role in VOLUME_ROLES.items():
            image = nib.Nifti1Image(getattr(subject, attribute), subject.affine)
            image.header.set_xyzt_units("mm", "sec")
            nib.save(image, str(folder / f"{HCP_NAMES[role]}.nii.gz"))
        (temporary / "simulation.json").write_text(json.dumps(subject.parameters, indent=1) + "\n")
    return final


def simulate_dataset(
    out: str | Path,
    n_subjects: int,
    labels: str | Path | None = None,
    voxel_size: float = 1.0,
    seed: int = 0,
    progress: bool = True,
    variation: Variation | None = None,
) -> list[Path]:
    """Simulate ``n_subjects`` into ``out`` in the HCP layout; returns the subject folders.

    Subject ``i`` uses seed ``seed + i`` and, with ``labels``, label map ``i mod n_maps``;
    ``variation``: the ranges subjects are drawn from (default ``Variation()``: calibrated to the HCP templates).
    """
    variation = variation or Variation()
    if voxel_size <= 0:
        raise InputError(f"voxel size must be positive, got {voxel_size}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sources = label_map_paths(labels) if labels else [None]
    cache: dict[Path | None, Anatomy] = {}
    written = []
    progress_bar = bar(range(n_subjects), allowed=progress, desc="simulate", unit="subject")
    for i in progress_bar:
        source = sources[i % len(sources)]
        if source not in cache:
            cache.clear()
            cache[source] = label_map_anatomy(source) if source else default_anatomy()
        started = time.perf_counter()
        subject = simulate_subject(cache[source], seed + i, voxel_size, variation)
        subject.parameters["label_map"] = str(source) if source else None
        subject.parameters["seconds"] = round(time.perf_counter() - started, 2)
        written.append(write_hcp_subject(subject, out, f"sim{i + 1:03d}"))
        if progress_bar.disable:
            log.info("simulate %s: %.1f s", written[-1].name, subject.parameters["seconds"])
    return written


def write_figure(subject_folders: list[Path], path: Path) -> Path:
    """Mid-axial T1w, T2w and tissue classes of the given simulated subjects."""
    from ..figures import simulated_subjects_figure

    rows = []
    for folder in subject_folders:
        volumes = [
            np.asarray(nib.load(str(folder / HCP_FOLDER / f"{HCP_NAMES[role]}.nii.gz")).dataobj)
            for role in ("t1", "t2", "seg")
        ]
        rows.append((folder.name, *volumes))
    return simulated_subjects_figure(rows, path)
