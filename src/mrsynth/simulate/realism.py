"""The simulator's realism check: tissue contrast ratios, comparable with the HCP templates'."""

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
