"""What both mask methods share: the result, the checks of the input T1w, skull-stripped or whole head, and the
warning when the input does not look like a T1w."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import labels
from ..errors import InputError
from ..io.nifti import check_affine
from ..logs import log

#: Less signal than this (ml) can be a skull-stripped T1w (a head is 3-5 litres, a brain 1-1.8; a tightly cropped
#: head can have 2.4).
STRIPPED_MAX_ML = 2500.0
#: ... if at least this fraction of the voxels without signal lie exactly at the background value (stripping sets them).
STRIPPED_MIN_FLAT_BACKGROUND = 0.5
#: The two kinds of input: a whole head, or a brain alone.
WHOLE_HEAD, STRIPPED = "whole-head", "skull-stripped"


@dataclass
class AutoMasks:
    """Masks computed from a T1w, on its grid."""

    brain: np.ndarray  # bool
    seg: np.ndarray  # int32 FreeSurfer codes (0 outside the brain)
    provenance: dict
    warnings: list[str] = field(default_factory=list)


def check_t1(t1: np.ndarray, affine: np.ndarray, source: str | Path) -> None:
    """Refuse what no registration can use: not 3D, non-finite, empty or constant, a singular affine."""
    if t1.ndim != 3 or min(t1.shape) < 8:
        raise InputError(f"expected a 3D T1w of at least 8 voxels per axis, got shape {tuple(t1.shape)}", source)
    if not np.isfinite(t1).all():
        raise InputError("contains NaN or Inf values", source)
    check_affine(affine, source)
    if float(t1.max()) == float(t1.min()):
        raise InputError(f"is constant ({float(t1.min())}): no brain can be found in it", source)


def check_brain(t1: np.ndarray, brain: np.ndarray, source: str | Path) -> None:
    """Refuse a T1w that holds no information inside its brain mask (constant there)."""
    inside = t1[brain]
    if inside.size and float(inside.max()) == float(inside.min()):
        raise InputError(
            f"is constant ({float(inside.min()):.4g}) inside the brain mask: nothing to predict from", source
        )


def looks_skull_stripped(t1: np.ndarray, affine: np.ndarray) -> bool:
    """Little signal (< ``STRIPPED_MAX_ML`` above 5 % of the nonzero voxels' 99th percentile), and the voxels
    without it mostly exactly at the background value."""
    nonzero = t1[t1 > 0]
    signal = t1 > 0.05 * np.percentile(nonzero, 99) if nonzero.size else np.zeros(t1.shape, bool)
    if signal.sum() * abs(np.linalg.det(affine[:3, :3])) / 1000 >= STRIPPED_MAX_ML:
        return False
    quiet = ~signal
    return bool(quiet.any() and (t1[quiet] == t1.min()).mean() >= STRIPPED_MIN_FLAT_BACKGROUND)


def contrast_warnings(t1: np.ndarray, seg: np.ndarray, brain: np.ndarray, source) -> list[str]:
    """A warning when the input does not look like a T1w (white matter darker than grey matter)."""
    bits, _ = labels.tissue_bits(seg, brain)
    white = t1[labels.has_class(bits, "white_matter") & brain]
    grey = t1[labels.has_class(bits, "grey_matter") & brain]
    if white.size and grey.size and np.median(white) < np.median(grey):
        return [
            warn(
                f"{source}: white matter is darker than grey matter (medians {np.median(white):.4g} < "
                f"{np.median(grey):.4g}): is this a T2w rather than a T1w? The masks assume a T1w"
            )
        ]
    return []


def warn(message: str) -> str:
    """Say ``message`` once, as a warning in the log (not also as a Python warning: the command line would print it
    twice), and hand it back to be recorded with the outputs."""
    log.warning(message)
    return message
