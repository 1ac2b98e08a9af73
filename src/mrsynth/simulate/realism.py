"""The simulator's realism checks: tissue contrast ratios and within-tissue statistics, to compare with real
templates."""

from __future__ import annotations

import numpy as np

from .. import labels


def contrast_ratios(t1: np.ndarray, t2: np.ndarray, seg: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Median intensity of WM, CSF and subcortical over GM (inside the brain mask), per contrast.

    The realism check of the simulator: the same numbers on the HCP templates are the
    reference (see tests/test_simulate.py).
    """
    bits, _ = labels.tissue_bits(seg, mask)
    brain = np.asarray(mask, bool)

    def median(volume, name):
        return float(np.median(volume[brain & labels.has_class(bits, name)]))

    ratios = {}
    for contrast, volume in (("t1w", t1), ("t2w", t2)):
        grey = median(volume, "grey_matter")
        for name in ("white_matter", "csf", "subcortical"):
            ratios[f"{contrast}_{name}_over_gm"] = median(volume, name) / grey
    return ratios


def within_tissue_statistics(
    t1: np.ndarray, t2: np.ndarray, seg: np.ndarray, mask: np.ndarray, tissues=("grey_matter", "white_matter")
) -> dict[str, float]:
    """How much intensities vary inside a tissue, and how far T1w predicts T2w there.

    Per tissue (inside the brain mask, eroded by one voxel so partial volume at tissue borders
    counts less): the robust coefficient of variation (IQR / 1.349 / median) of T1w and of
    T2w, and the Pearson correlation of T1w and T2w.  A low correlation means texture that no
    intensity mapping can recover from the T1w.
    """
    from scipy import ndimage

    bits, _ = labels.tissue_bits(seg, mask)
    brain = np.asarray(mask, bool)
    out = {}
    for name in tissues:
        inside = ndimage.binary_erosion(brain & labels.has_class(bits, name))
        a, b = t1[inside].astype(np.float64), t2[inside].astype(np.float64)
        for contrast, values in (("t1w", a), ("t2w", b)):
            q1, median, q3 = np.percentile(values, [25, 50, 75])
            out[f"{contrast}_{name}_cv"] = float((q3 - q1) / 1.349 / median)
        out[f"t1w_t2w_correlation_{name}"] = float(np.corrcoef(a, b)[0, 1])
    return out
