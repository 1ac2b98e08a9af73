"""Scoring predicted volumes against references (files, a prepared cache or a data folder).

The layer between NIfTI files or prepared subjects and :mod:`mrsynth.metrics`, used by
``mrsynth evaluate``, the demo and ``reproduce``, so every number is computed one way:
scores inside the reference's brain mask, 2D SSIM per axial slice of the reference grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data import PreparedSubject, is_prepared_cache, list_prepared
from ..errors import InputError
from ..inference import relative_path
from ..io import check_same_grid, discover, load_subject, read_volume, resolve_axis
from ..logs import log
from .metrics import evaluate_volume, summarize


@dataclass
class Reference:
    """An acquired T2w with its brain mask and tissue classes (a segmentation or prepared bits)."""

    id: str
    t2: np.ndarray
    mask: np.ndarray
    affine: np.ndarray
    seg: np.ndarray | None = None
    bits: np.ndarray | None = None
    source: str = ""

    @classmethod
    def from_prepared(cls, subject: PreparedSubject) -> "Reference":
        volumes = subject.native()
        if volumes.t2 is None:
            raise InputError("prepared subject has no T2w to score against", subject.folder)
        return cls(subject.id, volumes.t2, volumes.brain, volumes.affine, bits=volumes.bits, source=volumes.source)


def score(prediction: np.ndarray, reference: Reference, scale: str = "brain-median") -> dict:
    """Every score of one predicted volume (native axis order) against its reference."""
    return evaluate_volume(
        prediction,
        reference.t2,
        reference.mask,
        reference.seg,
        scale,
        resolve_axis("axial", reference.affine),
        bits=reference.bits,
    )


def references(root: str | Path) -> dict[str, Reference]:
    """Reference T2w, brain mask and tissue classes of every subject in a prepared cache or data folder."""
    root = Path(root)
    if is_prepared_cache(root):
        return {s.id: Reference.from_prepared(s) for s in list_prepared(root) if s.has_t2}
    found = {}
    for subject in discover(root):
        if subject.t2 is None:
            continue
        volumes = load_subject(subject, need_t2=True)
        found[subject.id] = Reference(
            subject.id, volumes.t2, volumes.mask, volumes.affine, seg=volumes.seg, source=str(subject.t2)
        )
    return found


def evaluate_file(pred: Path, ref: Reference, scale: str = "brain-median") -> dict:
    """Score one prediction file against a reference (grids must match)."""
    data, image = read_volume(Path(pred))
    check_same_grid(data.shape, image.affine, (ref.t2.shape, ref.affine), Path(pred), Path(ref.source), "reference")
    prediction = data.astype(np.float32)
    if not np.isfinite(prediction).all():
        raise InputError("prediction contains NaN or Inf values", pred)
    try:
        return score(prediction, ref, scale)
    except ValueError as error:
        raise InputError(str(error), pred) from error


def _predictions(pred_dir: Path, refs: dict[str, Reference]) -> tuple[dict[str, Path], list[Path]]:
    """Prediction files by subject id (flat ``<id>.nii[.gz]`` files, then BIDS derivatives), and the prediction
    files that match no reference subject."""
    matched, unmatched = {}, []
    for path in sorted(pred_dir.glob("*.nii*")):
        subject_id = path.name.split(".nii")[0]
        if subject_id in refs:
            matched.setdefault(subject_id, path)
        else:
            unmatched.append(path)
    if (pred_dir / "dataset_description.json").exists():
        expected = {pred_dir / relative_path(subject_id): subject_id for subject_id in refs}
        for path in sorted(pred_dir.glob("sub-*/**/anat/*_T2w.nii*")):
            if path in expected:
                matched.setdefault(expected[path], path)
            else:
                unmatched.append(path)
    return matched, unmatched


def evaluate_folder(
    pred_dir: Path, refs: dict[str, Reference], scale: str = "brain-median", strict: bool = False
) -> dict:
    """Score every prediction in ``pred_dir`` whose subject has a reference: per subject, mean and SD.

    ``pred_dir`` is a flat folder of ``<id>.nii[.gz]`` or mrsynth's BIDS derivatives
    (``sub-X/[ses-Y/]anat/<entities>_desc-mrsynth_T2w.nii.gz``).  Reference subjects without a prediction and
    predictions without a reference are named in a warning (and in the result's ``unmatched``), or refused
    with ``strict``: a table over fewer subjects than expected must not pass for the whole result.
    """
    pred_dir = Path(pred_dir)
    matched, extra = _predictions(pred_dir, refs)
    missing = sorted(set(refs) - set(matched))
    unmatched = {
        "references_without_prediction": missing,
        "predictions_without_reference": [str(p.relative_to(pred_dir)) for p in extra],
    }
    if not matched:
        raise InputError(
            f"no prediction named <subject>.nii.gz (or BIDS derivative) matches a reference subject "
            f"({', '.join(sorted(refs)) or 'none with a T2w'})",
            pred_dir,
        )
    _report_unmatched(unmatched, pred_dir, strict)
    per_subject = {subject_id: evaluate_file(path, refs[subject_id], scale) for subject_id, path in matched.items()}
    return {"per_subject": per_subject, "summary": summarize(per_subject), "unmatched": unmatched}


def _report_unmatched(unmatched: dict[str, list[str]], pred_dir: Path, strict: bool) -> None:
    problems = []
    if unmatched["references_without_prediction"]:
        problems.append(
            f"{len(unmatched['references_without_prediction'])} reference subject(s) without a "
            f"prediction: {', '.join(unmatched['references_without_prediction'])}"
        )
    if unmatched["predictions_without_reference"]:
        problems.append(
            f"{len(unmatched['predictions_without_reference'])} prediction(s) without a reference "
            f"subject: {', '.join(unmatched['predictions_without_reference'])}"
        )
    if problems and strict:
        raise InputError("; ".join(problems) + " (--strict)", pred_dir)
    for problem in problems:
        log.warning("%s: %s; scored the others", pred_dir, problem)
