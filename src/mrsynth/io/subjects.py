"""Subject discovery (HCP, BIDS, CSV manifest) and validation: files -> :class:`Subject`.

A subject is a T1-weighted volume, a FreeSurfer segmentation (``wmparc`` or
``aseg`` codes), a brain mask and, for training and evaluation, the T2-weighted
volume on the same grid.  Discovery only finds files; :func:`load_subject` reads
and validates them and raises :class:`~mrsynth.errors.InputError` naming the file
and the problem.

Layouts (``--layout``):

``hcp``
    ``ROOT/<subject>/T1w/{T1w_acpc_dc,T2w_acpc_dc,wmparc,brainmask_fs}.nii.gz``
    (the HCP release tree), or the same four names directly in ``ROOT/<subject>/``.
    ``ROOT`` may also be one such subject folder itself.
``bids``
    Every ``sub-*/[ses-*/]anat/<prefix>_T1w.nii[.gz]`` is a subject, with id
    ``<prefix>`` (e.g. ``sub-01_ses-1``).  T2w: ``<prefix>_T2w.nii[.gz]`` in the
    same folder, else the only ``sub-X[_ses-Y]_*T2w.nii[.gz]`` there.
    Segmentation and mask are searched next to the T1w and in
    ``ROOT/derivatives/*/sub-X/[ses-Y/]anat/``, among files named
    ``sub-X[_ses-Y]_*``: segmentation by ``*wmparc*``, then ``*aseg*``, then
    ``*_dseg``; brain mask ``*_mask`` (``*desc-brain_mask`` preferred).  Two
    candidates of the same rank are an error rather than a guess.
``csv``
    A manifest with the header ``subject,t1,t2,seg,mask``; paths relative to the
    CSV file; ``t2`` may be empty.
``auto``
    ``csv`` for a ``.csv`` file, ``bids`` if ``ROOT`` holds ``sub-*`` folders,
    ``hcp`` if it holds HCP subject folders.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from .nifti import NIFTI_SUFFIXES, check_affine, read_volume

LAYOUTS = ("auto", "hcp", "bids", "csv")
HCP_FOLDER = "T1w"  # <subject>/T1w/ in the HCP release
HCP_NAMES = {
    "t1": "T1w_acpc_dc",
    "t2": "T2w_acpc_dc",
    "seg": "wmparc",
    "mask": "brainmask_fs",
}
ROLE_NAMES = {"t1": "T1w image", "t2": "T2w image", "seg": "segmentation", "mask": "brain mask"}
AFFINE_TOLERANCE_MM = 1e-3
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Subject:
    """Where one subject's files are; ``None`` for a file that was not found."""

    id: str
    t1: Path | None
    seg: Path | None
    mask: Path | None
    t2: Path | None = None
    origin: Path | None = None  # the folder or manifest the subject was found in
    problem: str | None = None  # found, but unusable (e.g. ambiguous files): reported when it is loaded

    def sources(self) -> dict[str, Path]:
        """The files that exist in this subject, by role."""
        roles = {"t1": self.t1, "t2": self.t2, "seg": self.seg, "mask": self.mask}
        return {role: path for role, path in roles.items() if path is not None}


@dataclass
class SubjectVolumes:
    """A validated subject in memory: every volume on one grid."""

    subject: Subject
    t1: np.ndarray  # float32
    seg: np.ndarray | None  # int32 FreeSurfer codes
    mask: np.ndarray | None  # bool
    t2: np.ndarray | None  # float32
    affine: np.ndarray
    zooms: tuple[float, ...]
    notes: list[str] = field(default_factory=list)  # what reading changed or doubts, one line each (to log)


# --------------------------------------------------------------------------- discovery


def discover(root: str | Path, layout: str = "auto") -> list[Subject]:
    """Find the subjects under ``root`` in the given layout, sorted by id."""
    root = Path(root)
    if layout not in LAYOUTS:
        raise InputError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if not root.exists():
        raise InputError("does not exist", root)
    if layout == "auto":
        layout = detect_layout(root)
    finder = {"hcp": _discover_hcp, "bids": _discover_bids, "csv": _discover_csv}[layout]
    subjects = finder(root)
    if not subjects:
        raise InputError(f"no subjects found in the {layout} layout", root)
    ids = [s.id for s in subjects]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise InputError(f"duplicate subject ids: {', '.join(duplicates)}", root)
    for subject in subjects:
        if not _SAFE_ID.match(subject.id):
            raise InputError(f"subject id {subject.id!r} must be letters, digits, '.', '_' or '-'", root)
    return sorted(subjects, key=lambda s: s.id)


def detect_layout(root: Path) -> str:
    """Guess the layout of ``root`` (see the module docstring)."""
    if root.is_file():
        if root.suffix.lower() == ".csv":
            return "csv"
        raise InputError("is a file but not a .csv manifest", root)
    if any(p.is_dir() for p in root.glob("sub-*")):
        return "bids"
    if _is_hcp_subject(root) or any(_is_hcp_subject(p) for p in root.iterdir() if p.is_dir()):
        return "hcp"
    raise InputError(
        "no subjects recognised: expected HCP subject folders "
        "(<subject>/T1w/T1w_acpc_dc.nii.gz), BIDS sub-* folders or a .csv manifest",
        root,
    )


def _find_nifti(folder: Path, stem: str) -> Path | None:
    for suffix in NIFTI_SUFFIXES:
        path = folder / f"{stem}{suffix}"
        if path.exists():
            return path
    return None


def _hcp_folder(subject_dir: Path) -> Path | None:
    """The folder holding a subject's HCP files (``T1w/`` or the subject folder)."""
    for folder in (subject_dir / HCP_FOLDER, subject_dir):
        if folder.is_dir() and any(_find_nifti(folder, n) for n in HCP_NAMES.values()):
            return folder
    return None


def _is_hcp_subject(path: Path) -> bool:
    return _hcp_folder(path) is not None


def _hcp_subject(subject_dir: Path) -> Subject:
    folder = _hcp_folder(subject_dir)
    files = {role: _find_nifti(folder, stem) for role, stem in HCP_NAMES.items()}
    return Subject(id=subject_dir.name, origin=folder, **files)


def _discover_hcp(root: Path) -> list[Subject]:
    if _is_hcp_subject(root):
        return [_hcp_subject(root)]
    return [_hcp_subject(p) for p in sorted(root.iterdir()) if p.is_dir() and _is_hcp_subject(p)]


def _nifti_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.name.endswith(NIFTI_SUFFIXES))


def _strip_nifti(name: str) -> str:
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _pick(candidates: list[Path], ranked_patterns: list[str], what: str, where: Path) -> Path | None:
    """The single best candidate by pattern rank; two of the same rank are an error."""
    for pattern in ranked_patterns:
        matches = [p for p in candidates if re.search(pattern, _strip_nifti(p.name))]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            names = ", ".join(str(m) for m in matches)
            raise InputError(f"ambiguous {what}: several candidates ({names})", where)
    return None


def _discover_bids(root: Path) -> list[Subject]:
    subjects = []
    for t1 in sorted(root.glob("sub-*/anat/*_T1w.nii*")) + sorted(root.glob("sub-*/ses-*/anat/*_T1w.nii*")):
        anat = t1.parent
        prefix = _strip_nifti(t1.name)[: -len("_T1w")]
        session = anat.parent.name if anat.parent.name.startswith("ses-") else None
        subject_dir = anat.parent.parent if session else anat.parent
        base = subject_dir.name + (f"_{session}" if session else "")
        relative = anat.relative_to(root)
        folders = [anat] + sorted((root / "derivatives").glob(f"*/{relative}"))
        candidates = [p for folder in folders for p in _nifti_files(folder) if p.name.startswith(base + "_")]
        try:
            t2 = _find_nifti(anat, f"{prefix}_T2w") or _pick(
                [p for p in candidates if p.parent == anat], [r"_T2w$"], "T2w image", anat
            )
            seg = _pick(candidates, [r"wmparc", r"aseg", r"_dseg$"], "segmentation", anat)
            mask = _pick(candidates, [r"desc-brain_mask$", r"_mask$"], "brain mask", anat)
        except InputError as error:  # this subject alone is unusable; the others are not
            subjects.append(Subject(id=prefix, t1=t1, seg=None, mask=None, origin=anat, problem=str(error)))
            continue
        subjects.append(Subject(id=prefix, t1=t1, t2=t2, seg=seg, mask=mask, origin=anat))
    return subjects


def _discover_csv(manifest: Path) -> list[Subject]:
    if not manifest.is_file():
        raise InputError("is not a CSV file", manifest)
    try:
        with manifest.open(newline="") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            header = reader.fieldnames or []
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"cannot read the manifest: {error}", manifest) from error
    if not header:
        raise InputError(
            "the manifest is empty: expected the header subject,t1,t2,seg,mask and one row per subject", manifest
        )
    missing = [c for c in ("subject", "t1", "t2", "seg", "mask") if c not in header]
    if missing:
        raise InputError(
            f"manifest lacks column(s) {', '.join(missing)}; the header must be subject,t1,t2,seg,mask",
            manifest,
        )

    def resolve(cell: str | None) -> Path | None:
        cell = (cell or "").strip()
        return (manifest.parent / cell) if cell else None

    return [
        Subject(
            id=(row["subject"] or "").strip(),
            t1=resolve(row["t1"]),
            t2=resolve(row["t2"]),
            seg=resolve(row["seg"]),
            mask=resolve(row["mask"]),
            origin=manifest,
        )
        for row in rows
    ]


# --------------------------------------------------------------------------- validation


def _finite_float32(data: np.ndarray, path: Path) -> np.ndarray:
    if np.iscomplexobj(data):
        raise InputError("complex-valued image: give a magnitude image (casting would drop the imaginary part)", path)
    volume = data.astype(np.float32, copy=False)
    if not np.isfinite(volume).all():
        raise InputError("contains NaN or Inf values", path)
    return volume


def _integer_codes(data: np.ndarray, path: Path) -> np.ndarray:
    if np.issubdtype(data.dtype, np.integer):
        low, high = (int(data.min()), int(data.max())) if data.size else (0, 0)
        if low < np.iinfo(np.int32).min or high > np.iinfo(np.int32).max:
            raise InputError(f"segmentation codes from {low} to {high} do not fit 32 bits: not FreeSurfer codes", path)
        return data.astype(np.int32, copy=False)
    if not np.isfinite(data).all():
        raise InputError("segmentation contains NaN or Inf values", path)
    codes = np.rint(data)
    if np.abs(data - codes).max(initial=0) > 1e-3:
        raise InputError("segmentation has non-integer values (is it a label map?)", path)
    if np.abs(codes).max(initial=0) > np.iinfo(np.int32).max:
        raise InputError(
            f"segmentation codes up to {np.abs(codes).max():.0f} do not fit 32 bits: not FreeSurfer codes", path
        )
    return codes.astype(np.int32)


def load_subject(
    subject: Subject, need_t2: bool = False, need_labels: bool = True, t1_role: str = "T1w"
) -> SubjectVolumes:
    """Read and validate every file of ``subject``; raise :class:`InputError` on any problem.

    ``need_labels=False`` (prediction with a model that needs neither tissue masks nor a
    brain mask) lets the segmentation and brain mask be absent; present ones are checked.
    ``t1_role``: what the image in the T1w's place is to the user, in messages (``evaluate`` puts its reference
    T2w there).
    """
    if subject.problem:
        raise InputError(f"subject {subject.id}: {subject.problem}")
    required = ("t1",) + (("seg", "mask") if need_labels else ()) + (("t2",) if need_t2 else ())
    for role in required:
        if getattr(subject, role) is None:
            raise InputError(
                f"subject {subject.id}: required {ROLE_NAMES[role]} is missing "
                f"(HCP name {HCP_NAMES[role]}.nii.gz; see the layout rules in the docs)",
                subject.origin,
            )
    t1_raw, reference = read_volume(subject.t1)
    check_affine(reference.affine, subject.t1)
    t1 = _finite_float32(t1_raw, subject.t1)
    grid = (t1.shape, reference.affine)
    notes: list[str] = []
    if t1.size and float(t1.min()) < 0:
        notes.append(
            f"{subject.t1}: {t1_role} values down to {float(t1.min()):.4g}, shifted up so that the lowest is 0 "
            "(MR magnitude is never negative: an offset in the file)"
        )
        t1 = t1 - t1.min()

    def on_grid(path: Path) -> np.ndarray:
        data, image = read_volume(path)
        check_same_grid(data.shape, image.affine, grid, path, subject.t1, t1_role)
        return data

    seg = _integer_codes(on_grid(subject.seg), subject.seg) if subject.seg else None
    mask = None
    if subject.mask:
        mask = brain_mask(on_grid(subject.mask), subject.mask, notes)
    t2 = _finite_float32(on_grid(subject.t2), subject.t2) if subject.t2 else None
    zooms = tuple(float(z) for z in reference.header.get_zooms()[:3])
    return SubjectVolumes(subject, t1, seg, mask, t2, reference.affine.copy(), zooms, notes)


def brain_mask(data: np.ndarray, path: Path, notes: list[str]) -> np.ndarray:
    """A brain mask file as booleans: every voxel above 0, or for a soft mask (values between 0 and 1, a
    probability) every voxel of at least 0.5, and said so: prediction, its work grid and scoring then agree."""
    if not np.isfinite(data).all():
        raise InputError("brain mask contains NaN or Inf values", path)
    soft = bool(np.any((data > 0) & (data < 1)))
    mask = data >= 0.5 if soft else data > 0
    if soft:
        notes.append(f"{path}: a soft brain mask (values between 0 and 1): the voxels of 0.5 and above are brain")
    if not mask.any():
        raise InputError(
            "brain mask is empty (no voxel > 0)" if not soft else "brain mask is empty (no voxel >= 0.5)", path
        )
    return mask


def check_same_grid(shape, affine, grid, path: Path, reference: Path, role: str = "T1w") -> None:
    """Raise :class:`InputError` naming ``path`` if its grid (shape, affine) differs from ``grid``, the grid of
    ``reference`` (what it is to the user: the ``role``, e.g. the T1w, the prediction)."""
    ref_shape, ref_affine = grid
    if tuple(shape) != tuple(ref_shape):
        raise InputError(
            f"grid differs from the {role} {reference.name}: shape {tuple(shape)} vs {tuple(ref_shape)}", path
        )
    if not np.allclose(affine, ref_affine, atol=AFFINE_TOLERANCE_MM, rtol=0):
        worst = float(np.abs(np.asarray(affine) - ref_affine).max())
        raise InputError(
            f"grid differs from the {role} {reference.name}: affines differ by up to {worst:.4g} mm "
            f"(tolerance {AFFINE_TOLERANCE_MM} mm)",
            path,
        )
