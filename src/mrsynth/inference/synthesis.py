"""One T1w file through the whole pipeline, with what a reader needs to judge the result: the synthetic T2w, the
brain mask it used, a voxel-wise uncertainty map and the quality checks a report shows.

:func:`synthesize` reads and checks the T1w as :func:`~.predict.predict_files` does (the same checks, the brain mask
given or computed), predicts, maps the uncertainty (:mod:`.uncertainty`) and runs three checks, each a warning when
it fails:

- the contrast check: the learned segmenter surer of the image with its intensities inverted (a T2w given as the
  T1w);
- the input's range: brain voxels whose normalized T1w lies far outside what the model was trained on
  (``TRAINING_RANGE``, in the model's input units);
- the brain's size: a brain mask much smaller or larger than a brain (``BRAIN_ML``).

Nothing is written here: the BIDS App (:mod:`mrsynth.experiments.bids_app`) writes and reports it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..masks import check_source
from ..masks.common import warn
from ..networks import ModelInfo, Transform
from .predict import checked_inputs, needs_masks, t1_transform
from .uncertainty import predict_with_uncertainty

#: The normalized T1w (brain median 1) inside the brain of the pretrained model's simulated training subjects spans
#: 0 to about 2.3 (99.9th percentile over 40 subjects of every sequence; the measurement is in the docstring of
#: ``benchmarks/studies/uncertainty``); a voxel above 3 or below 0 is far outside it.
TRAINING_RANGE = (0.0, 3.0)
#: A warning when more than this share of the brain lies outside the training range.
OUT_OF_RANGE_SHARE = 0.01
#: A brain mask outside these volumes (ml) is much smaller or larger than an adult brain (about 1,000-1,600 ml with
#: the cerebellum and brainstem): a partial field of view, a child's head, or a failed mask.
BRAIN_ML = (700.0, 2200.0)


@dataclass
class Synthesis:
    """One T1w's synthetic T2w with its brain mask and uncertainty (on the T1w's grid), the T1w transform, what
    reading it noted or doubts (``notes``, warnings included), and the checks a report shows (``checks``)."""

    t1: np.ndarray
    affine: np.ndarray
    t2w: np.ndarray
    brain: np.ndarray
    uncertainty: np.ndarray
    transform: Transform
    masks: dict
    notes: list[str] = field(default_factory=list)
    checks: dict = field(default_factory=dict)
    seconds: float = 0.0


def synthesize(model, info: ModelInfo, t1: Path, mask: Path | None = None, masks: str = "auto", **options) -> Synthesis:
    """The synthetic T2w of the T1w file ``t1``, its uncertainty and checks; the brain mask from ``mask`` or, without
    one, computed by ``masks`` (a method of :mod:`mrsynth.masks`).  For models that read the T1w alone (the
    pretrained model's kind); ``options`` as :func:`~.predict.predict_arrays`."""
    started = time.perf_counter()
    if info.uses_masks:
        raise InputError("this model reads tissue masks: synthesize takes T1w-only models (the pretrained one)", t1)
    masks = check_source("files" if mask is not None else masks)
    checked = checked_inputs(info, Path(t1), None, mask, masks)
    volumes = checked.volumes
    if volumes.mask is None or not needs_masks(info):
        raise InputError("no brain mask: give one, or let it be computed (masks other than files)", t1)
    transform = t1_transform(info, volumes.t1, volumes.mask, t1)
    t2w, uncertainty = predict_with_uncertainty(
        model, info, volumes.t1, volumes.affine, volumes.mask, transform, source=str(t1), **options
    )
    brain = np.asarray(volumes.mask, bool)
    checks, warnings = quality_checks(volumes.t1, brain, volumes.zooms, transform, uncertainty, checked.masks, t1)
    return Synthesis(
        t1=volumes.t1,
        affine=volumes.affine,
        t2w=t2w,
        brain=brain,
        uncertainty=uncertainty,
        transform=transform,
        masks=checked.masks,
        notes=checked.notes + warnings,
        checks=checks,
        seconds=time.perf_counter() - started,
    )


def quality_checks(
    t1: np.ndarray, brain: np.ndarray, zooms, transform: Transform, uncertainty: np.ndarray, masks: dict, source
) -> tuple[dict, list[str]]:
    """The checks a report shows (``contrast``, ``brain_ml``, ``outside_training_range``, ``mean_uncertainty``) and
    a warning for each that fails, logged once (the contrast check's warning is already among the input's notes)."""
    normalized = transform(t1[brain])
    low, high = TRAINING_RANGE
    outside = float(np.mean((normalized < low) | (normalized > high)))
    brain_ml = float(brain.sum() * np.prod(zooms) / 1000)
    confident, inverted = masks.get("confidence"), masks.get("inverted_confidence")
    contrast = "not checked" if confident is None else "T1w-like" if inverted <= confident else "inverted (a T2w?)"
    checks = {
        "contrast": contrast,
        "segmenter_confidence": confident,
        "segmenter_confidence_inverted": inverted,
        "brain_ml": round(brain_ml, 1),
        "outside_training_range": round(outside, 5),
        "mean_uncertainty": round(float(uncertainty[brain].mean()), 5),
    }
    warnings = []
    if outside > OUT_OF_RANGE_SHARE:
        warnings.append(
            warn(
                f"{source}: {outside:.1%} of the brain's voxels lie far outside the intensities the model was trained "
                f"on (normalized T1w outside {low:g}-{high:g}): is this a T1w (no contrast agent, magnitude)?"
            )
        )
    if not BRAIN_ML[0] <= brain_ml <= BRAIN_ML[1]:
        warnings.append(
            warn(
                f"{source}: the brain mask holds {brain_ml:,.0f} ml, outside the {BRAIN_ML[0]:,.0f}-{BRAIN_ML[1]:,.0f} "
                "ml of an adult brain: a partial field of view, a child's head, or a failed mask? Look at the report"
            )
        )
    return checks, warnings
