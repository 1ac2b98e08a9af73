"""Site calibration without pairs (``--match``): a prediction's tissue contrast mapped onto a site's own T2w.

No T1w tells which T2w protocol a site runs, so a zero-shot prediction has the canonical (HCP-like) contrast.
Any T2w of the site (another subject, not registered) shows the site's: its tissue classes are found by the
learned segmenter on the image turned upside down (a T2w inverted looks like a T1w to it; a T1w given as the
reference is refused, since it is surer of it as given).  Each class's median, in units of the brain median,
in the prediction and in the reference gives one point of a monotone piecewise-linear map of intensities (0
kept at 0), applied to the whole prediction: the prediction's white matter gets the site's white-matter
contrast, its CSF the site's CSF, and so on, without seams between classes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import labels
from ..errors import InputError
from ..logs import log

#: The classes whose medians anchor the map (the brain's; vessels and unknown are too few or too mixed).
ANCHORS = ("white_matter", "grey_matter", "subcortical", "cerebellum", "csf")
MIN_VOXELS = 50


def class_medians(volume: np.ndarray, classes: np.ndarray, brain: np.ndarray) -> dict[str, float]:
    """Median of each anchor class, in units of the volume's brain median (classes: ``labels.CLASSES`` indices)."""
    scale = float(np.median(volume[brain]))
    out = {}
    for name in ANCHORS:
        inside = brain & (classes == labels.CLASSES.index(name))
        if inside.sum() >= MIN_VOXELS and scale > 0:
            out[name] = float(np.median(volume[inside])) / scale
    return out


def contrast_map(predicted: dict[str, float], site: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """Knots ``(in, out)`` of the map from the prediction's class medians to the site's (both brain-median units),
    through 0 and increasing (a class whose site median falls below a darker class's is held level)."""
    shared = sorted((predicted[name], site[name]) for name in ANCHORS if name in predicted and name in site)
    if len(shared) < 2:
        raise ValueError("fewer than two tissue classes found in both the prediction and the reference")
    knots_in = np.array([0.0] + [a for a, _ in shared])
    knots_out = np.maximum.accumulate(np.array([0.0] + [b for _, b in shared]))
    return knots_in, knots_out


def apply_map(volume: np.ndarray, brain: np.ndarray, knots_in: np.ndarray, knots_out: np.ndarray) -> np.ndarray:
    """``volume`` through the map (in its brain-median units), extended linearly beyond the last knot, its brain
    median kept."""
    scale = float(np.median(volume[brain]))
    x = volume / scale
    slope = (knots_out[-1] - knots_out[-2]) / max(knots_in[-1] - knots_in[-2], 1e-6)
    mapped = np.where(x > knots_in[-1], knots_out[-1] + (x - knots_in[-1]) * slope, np.interp(x, knots_in, knots_out))
    return (np.maximum(mapped, 0) * scale).astype(np.float32)


def site_classes(t2: np.ndarray, affine: np.ndarray, source) -> tuple[np.ndarray, np.ndarray]:
    """The brain mask and tissue classes of a site's T2w, by the learned segmenter on it inverted; refused when it
    looks like a T1w."""
    from ..masks import segmenter

    result = segmenter.segment(segmenter.inverted(np.asarray(t2, np.float32)), affine)
    if result.looks_inverted:  # the segmenter was surer of the image itself than inverted: a T1w
        raise InputError(
            "--match takes a T2w of the site, and this image looks like a T1w (the segmenter is surer of it as "
            f"given, {result.inverted_confidence:.2f}, than inverted, {result.confidence:.2f})",
            source,
        )
    brain = result.brain & (np.asarray(t2) > 0)
    if not brain.any():
        raise InputError("no brain found in the --match image", source)
    return brain, result.classes


def match_to_site(
    prediction: np.ndarray,
    classes: np.ndarray,
    brain: np.ndarray,
    site_t2: np.ndarray,
    site_affine: np.ndarray,
    source: str | Path,
) -> tuple[np.ndarray, dict]:
    """The prediction with the site's contrast (module docstring), and a record of the map."""
    site_brain, site_tissue = site_classes(site_t2, site_affine, source)
    predicted, site = class_medians(prediction, classes, brain), class_medians(site_t2, site_tissue, site_brain)
    try:
        knots_in, knots_out = contrast_map(predicted, site)
    except ValueError as error:
        raise InputError(f"cannot match: {error}", source) from None
    log.info(
        "%s: tissue contrast matched (%s)",
        source,
        ", ".join(f"{n} {predicted[n]:.2f} -> {site[n]:.2f}" for n in ANCHORS if n in predicted and n in site),
    )
    record = {
        "reference": str(source),
        "prediction_medians": predicted,
        "site_medians": site,
        "knots_in": knots_in.tolist(),
        "knots_out": knots_out.tolist(),
    }
    return apply_map(prediction, brain, knots_in, knots_out), record
