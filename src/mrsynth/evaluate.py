"""Scoring predictions written as NIfTI against references (files, a prepared cache or a data folder).

The thin file-handling layer over :mod:`mrsynth.metrics` that ``mrsynth evaluate`` uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cache import list_prepared, resolve_axis
from .errors import InputError
from .metrics import evaluate_volume, summarize
from .subjects import check_same_grid, discover, read_volume


@dataclass
class Reference:
    id: str
    t2: np.ndarray
    mask: np.ndarray
    affine: np.ndarray
    seg: np.ndarray | None = None
    bits: np.ndarray | None = None
    source: str = ""


def references(root: str | Path) -> dict[str, Reference]:
    """Reference T2w, brain mask and tissue classes of every subject in a prepared cache or data folder."""
    root = Path(root)
    found = {}
    if root.is_dir() and any(root.glob("*/subject.json")):
        for subject in list_prepared(root):
            if not subject.has_t2:
                continue
            bits = subject.to_native(np.asarray(subject.array("tissue")))
            found[subject.id] = Reference(subject.id, subject.to_native(np.asarray(subject.array("t2"))),
                                          (bits & 1) > 0, np.asarray(subject.meta["affine"]), bits=bits,
                                          source=str(subject.folder))
        return found
    from .subjects import load_subject

    for subject in discover(root):
        if subject.t2 is None:
            continue
        volumes = load_subject(subject, need_t2=True)
        found[subject.id] = Reference(subject.id, volumes.t2, volumes.mask, volumes.affine, seg=volumes.seg,
                                      source=str(subject.t2))
    return found


def evaluate_file(pred: Path, ref: Reference, scale: str = "brain-median") -> dict:
    """Score one prediction file against a reference (grids must match)."""
    data, image = read_volume(Path(pred))
    check_same_grid(data.shape, image.affine, (ref.t2.shape, ref.affine), Path(pred), Path(ref.source))
    prediction = data.astype(np.float32)
    if not np.isfinite(prediction).all():
        raise InputError("prediction contains NaN or Inf values", pred)
    try:
        return evaluate_volume(prediction, ref.t2, ref.mask, ref.seg, scale,
                               resolve_axis("axial", ref.affine), bits=ref.bits)
    except ValueError as error:
        raise InputError(str(error), pred) from error


def evaluate_folder(pred_dir: Path, refs: dict[str, Reference], scale: str = "brain-median") -> dict:
    """Score every ``pred_dir/<id>.nii[.gz]`` whose id has a reference: per subject, mean and SD."""
    pred_dir = Path(pred_dir)
    per_subject = {}
    for path in sorted(pred_dir.glob("*.nii*")):
        subject_id = path.name.split(".nii")[0]
        if subject_id in refs:
            per_subject[subject_id] = evaluate_file(path, refs[subject_id], scale)
    if not per_subject:
        raise InputError(f"no prediction named <subject>.nii.gz matches a reference subject "
                         f"({', '.join(sorted(refs)) or 'none with a T2w'})", pred_dir)
    return {"per_subject": per_subject, "summary": summarize(per_subject)}
