"""A voxel-wise uncertainty map of a synthetic T2w: where to trust it least.

The map is the local spread of the prediction: the standard deviation of the synthetic T2w in a Gaussian window of
``SIGMA_MM`` around each voxel (in its units, 0 outside the brain mask).  It is high where the value depends on
placing an edge exactly: tissue boundaries, sulci, the ventricles' walls, vessels, a lesion's rim and the brain
mask's edge, where a millimetre of misplacement, partial volume or a resolution that differs from the scanner's
changes the value most.  Chosen by measurement (``python -m benchmarks uncertainty``, benchmarks/RESULTS.md) among
test-time flips, contrast perturbations of the input, the prediction's fine detail at several scales, its
intensity, the distance to the mask's edge and combinations: on the two raw clinical pairs of
``shared/data/open-ms-clinical`` it ranked voxels by absolute error best (Spearman 0.36 and 0.34, the 10 % most
uncertain voxels holding 45 % and 42 % of the squared error), while disagreement under flips or contrast
perturbations did not rank them (Spearman <= 0.25).  It costs two Gaussian filters, nothing of the network.

What it does not say: a whole tissue's contrast off (a site's T2w protocol differs from HCP's: on the two
averaged templates, whose errors are mostly such, it ranks voxels weakly, Spearman 0.08-0.14), nor whether a
lesion is real.  It ranks voxels; it is not a calibrated error bar.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..networks import ModelInfo, Transform
from .predict import predict_arrays

SIGMA_MM = 3.0
METHOD = f"local spread: the standard deviation of the synthetic T2w in a Gaussian window of sigma {SIGMA_MM:g} mm"
MEANING = (
    "high where the synthetic T2w changes within a few millimetres (tissue boundaries, sulci, ventricles, vessels, "
    "lesion rims, the brain mask's edge), where its value depends most on placing an edge exactly; it ranks voxels "
    "by their expected error, it is not a calibrated error bar, and it does not show a whole tissue's contrast being "
    "off (a site's T2w protocol) or whether a lesion is real"
)


def local_spread(volume: np.ndarray, zooms, sigma_mm: float = SIGMA_MM) -> np.ndarray:
    """The standard deviation of ``volume`` in a Gaussian window of ``sigma_mm`` (per axis in voxels from
    ``zooms``) around each voxel."""
    sigma = [sigma_mm / float(z) for z in zooms]
    values = np.asarray(volume, np.float64)
    mean = ndimage.gaussian_filter(values, sigma)
    square = ndimage.gaussian_filter(values * values, sigma)
    return np.sqrt(np.maximum(square - mean * mean, 0)).astype(np.float32)


def uncertainty_map(t2w: np.ndarray, brain: np.ndarray, zooms) -> np.ndarray:
    """The uncertainty of a synthetic T2w (module docstring), 0 outside the brain mask."""
    spread = local_spread(t2w, zooms)
    spread[~np.asarray(brain, bool)] = 0
    return spread


def predict_with_uncertainty(
    model,
    info: ModelInfo,
    t1: np.ndarray,
    affine: np.ndarray,
    mask: np.ndarray,
    transform: Transform | None = None,
    **options,
) -> tuple[np.ndarray, np.ndarray]:
    """A T1w-only model's T2w of an in-memory T1w and its uncertainty map, on the T1w's grid (``options``: those of
    :func:`~.predict.predict_arrays`)."""
    t2w = predict_arrays(model, info, t1, affine, None, mask, transform=transform, **options)
    zooms = np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))
    return t2w, uncertainty_map(t2w, mask, zooms)
