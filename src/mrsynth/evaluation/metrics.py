"""Scores of predicted volumes against the acquired T2w.

Whole volumes (:func:`evaluate_volume`); the paper's patch losses are training's
(:mod:`mrsynth.training.losses`):

* ``mse_fov``: the paper's metric, mean squared error over the whole field of view.
  Whole-image figures flatter every method (the background is free), so everything else
  is computed inside the brain mask:
* ``mae``, ``rmse``, ``mse`` (brain), ``psnr`` (MONAI's PSNR over brain voxels, with
  ``data_range`` = max - min of the reference inside the brain), ``ssim_3d`` and
  ``ssim_2d`` (MONAI's SSIM map, Gaussian window sigma 1.5 truncated to 7 voxels, averaged
  over brain voxels; 2D per slice along the slicing axis, then over slices with brain);
* ``psnr_p99``: the scale-free score, whatever ``scale``: prediction and reference each
  divided by their own 99th percentile inside the brain mask, PSNR over brain voxels with
  data range 1 (MONAI).  No test information reaches the prediction, and unlike ``psnr``
  the peak does not depend on the reference's brightest voxel;
* ``psnr_optimal``: the scale-optimal score: the reference divided by its own brain 99th
  percentile, the prediction times its least-squares gain to it (no T1w tells the global
  scale, so no method gains or loses from a scale convention), PSNR over brain voxels with
  data range 1;
* ``mse_<class>``: MSE inside each of the eight tissue classes (with a segmentation).

Intensity scale (``scale``): ``brain-median`` (default) divides prediction and reference
each by their own median inside the brain mask before scoring, so numbers are comparable
across subjects and scanners whatever their global gain (which no T1w-to-T2w mapping can
know); ``raw`` scores the intensities as stored (the paper's units when the model was
trained with ``--norm paper`` on data of one consistent scale, like HCP).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .. import labels

INTENSITY_SCALES = ("brain-median", "raw")
SSIM_WINDOW = 7
SSIM_SIGMA = 1.5


def _rescale(volume: np.ndarray, brain: np.ndarray, scale: str, what: str = "volume") -> np.ndarray:
    if scale == "raw":
        return volume.astype(np.float32, copy=False)
    if scale != "brain-median":
        raise ValueError(f"unknown scale {scale!r}; choose from {INTENSITY_SCALES}")
    median = float(np.median(volume[brain]))
    if not median > 0:
        raise ValueError(f"the {what}'s median inside the brain mask is {median}: use scale 'raw'")
    return (volume / median).astype(np.float32)


def psnr_optimal(pred: np.ndarray, ref: np.ndarray, brain: np.ndarray) -> float | None:
    """PSNR (data range 1) over brain voxels of the reference divided by its brain 99th percentile and the
    prediction times the gain that fits it best (least squares)."""
    x, y = (np.asarray(v[brain], np.float64) for v in (pred, ref))
    peak, energy = float(np.percentile(y, 99)), float(x @ x)
    if peak <= 0 or energy <= 0:
        return None
    y = y / peak
    error = float(np.mean((x * (x @ y / energy) - y) ** 2))
    return float(10 * np.log10(1 / error)) if error > 0 else math.inf


def psnr_p99(pred: np.ndarray, ref: np.ndarray, brain: np.ndarray) -> float | None:
    """PSNR (data range 1) over brain voxels of each volume divided by its own brain 99th percentile."""
    inside = [np.asarray(v[brain], np.float32) for v in (pred, ref)]
    peaks = [float(np.percentile(v, 99)) for v in inside]
    if min(peaks) <= 0:
        return None
    scaled = [torch.from_numpy(v / peak)[None] for v, peak in zip(inside, peaks)]
    from monai.metrics import PSNRMetric  # MONAI is imported where used: it takes ~1 s, which `mrsynth` pays otherwise

    return float(PSNRMetric(max_val=1.0)(*scaled).item())


def _bounding_box(mask: np.ndarray, margin: int):
    where = np.argwhere(mask)
    low = np.maximum(where.min(0) - margin, 0)
    high = np.minimum(where.max(0) + margin + 1, mask.shape)
    return tuple(slice(a, b) for a, b in zip(low, high))


def masked_ssim(pred: np.ndarray, ref: np.ndarray, brain: np.ndarray, data_range: float, spatial_dims: int) -> float:
    """Mean of MONAI's SSIM map over brain voxels (3D volume, or a stack of 2D slices on axis 0)."""
    half = SSIM_WINDOW // 2
    to_tensor = lambda v: torch.from_numpy(np.ascontiguousarray(v, np.float32))
    # a margin of half a window on every side, so a mask at the volume's edge or thinner than the
    # window (a few slices) still has a full window around each of its voxels
    pad = [(0, 0)] * (3 - spatial_dims) + [(half, half)] * spatial_dims
    pred, ref = np.pad(pred, pad, mode="edge"), np.pad(ref, pad, mode="edge")
    brain = np.pad(brain, pad, constant_values=False)
    if spatial_dims == 3:
        box = _bounding_box(brain, half)
        pred, ref, brain = pred[box], ref[box], brain[box]
        x, y = to_tensor(pred)[None, None], to_tensor(ref)[None, None]
        inner = tuple(slice(half, n - half) for n in brain.shape)
    else:
        x, y = to_tensor(pred)[:, None], to_tensor(ref)[:, None]
        inner = (slice(None),) + tuple(slice(half, n - half) for n in brain.shape[1:])
    from monai.metrics.regression import compute_ssim_and_cs

    ssim_map, _ = compute_ssim_and_cs(
        x, y, spatial_dims, [SSIM_WINDOW] * spatial_dims, [SSIM_SIGMA] * spatial_dims, data_range=data_range
    )
    ssim_map = ssim_map[:, 0].numpy()
    weights = brain[inner]
    if spatial_dims == 3:
        return float(ssim_map[0][weights].mean())
    per_slice = [ssim_map[i][weights[i]].mean() for i in range(len(weights)) if weights[i].any()]
    return float(np.mean(per_slice))


def evaluate_volume(
    pred: np.ndarray,
    ref: np.ndarray,
    mask: np.ndarray,
    seg: np.ndarray | None = None,
    scale: str = "brain-median",
    slice_axis: int = 2,
    bits: np.ndarray | None = None,
) -> dict:
    """All scores of one predicted volume (see the module docstring).

    Per-tissue MSE needs the tissue classes: a segmentation ``seg`` or the prepared
    cache's bit field ``bits``.
    """
    if pred.shape != ref.shape or mask.shape != ref.shape:
        raise ValueError(f"shapes differ: prediction {pred.shape}, reference {ref.shape}, mask {mask.shape}")
    brain = np.asarray(mask) > 0
    if not brain.any():
        raise ValueError("the brain mask is empty")
    for what, volume in (("prediction", pred), ("reference", ref)):
        if not np.isfinite(volume[brain]).all():
            raise ValueError(f"the {what} holds NaN or Inf values inside the brain mask")
    pred, ref = _rescale(pred, brain, scale, "prediction"), _rescale(ref, brain, scale, "reference")
    error = pred.astype(np.float64) - ref
    inside = error[brain]
    data_range = float(ref[brain].max() - ref[brain].min())
    if not data_range > 0:
        raise ValueError("the reference is constant inside the brain mask: PSNR and SSIM need some contrast")
    mse = float(np.mean(inside**2))
    from monai.metrics import PSNRMetric

    psnr = PSNRMetric(max_val=data_range)(torch.from_numpy(pred[brain])[None], torch.from_numpy(ref[brain])[None])
    scores = {
        "scale": scale,
        "data_range": data_range,
        "mse_fov": float(np.mean(error.astype(np.float64) ** 2)),
        "mse": mse,
        "mae": float(np.mean(np.abs(inside))),
        "rmse": math.sqrt(mse),
        "psnr": float(psnr.item()),
        "psnr_p99": psnr_p99(pred, ref, brain),
        "psnr_optimal": psnr_optimal(pred, ref, brain),
        "ssim_3d": masked_ssim(pred, ref, brain, data_range, 3),
        "ssim_2d": masked_ssim(*(np.moveaxis(v, slice_axis, 0) for v in (pred, ref, brain)), data_range, 2),
        "brain_voxels": int(brain.sum()),
    }
    if seg is not None:
        bits, _ = labels.tissue_bits(seg, brain)
    if bits is not None:
        for name in labels.CLASSES:
            members = labels.has_class(bits, name)
            scores[f"mse_{name}"] = float(np.mean(error[members].astype(np.float64) ** 2)) if members.any() else None
    return scores


def summarize(per_subject: dict[str, dict]) -> dict:
    """Mean and SD over subjects of every numeric score."""
    keys = [
        k for k, v in next(iter(per_subject.values())).items() if isinstance(v, (int, float)) and k != "brain_voxels"
    ]
    summary = {}
    for key in keys:
        values = [s[key] for s in per_subject.values() if s.get(key) is not None]
        summary[key] = {
            "mean": float(np.mean(values)),
            "sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            "n": len(values),
        }
    return summary
