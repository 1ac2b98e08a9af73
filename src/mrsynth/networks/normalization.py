"""Intensity normalization, fitted on training subjects and applied identically at prediction.

Three methods:

``paper``
    The paper (section 3): "the average overall intensity value was calculated
    across all training images and subtracted from the complete dataset".  We take
    the voxel-weighted mean over the whole field of view of every training T1w,
    and separately of every training T2w, and subtract each from its contrast.
    Predictions are mapped back by adding the T2w mean, so the paper's MSE is in
    the scanner's T2w units.
``robust`` (default)
    Each volume is divided by its own median inside the brain mask, so brain
    tissue sits near 1 and background at 0 whatever the scanner's scaling or the
    subject's global gain.  Predictions are mapped back to intensities by the mean
    T2w brain median of the training subjects (a T2w for a new subject does not
    exist at prediction time).
``percentile``
    The same with each volume's 99th percentile inside the brain mask instead of its median:
    brain tissue between 0 and about 1.  Where the median sits on one tissue (white matter in
    one T1w, grey matter in another), the 99th percentile is set by the brightest tissue of
    the contrast instead.
``histogram``
    Histogram standardization (Nyul, Udupa and Zhang 2000) of the T1w: each T1w is mapped,
    piecewise linearly, so that its brain landmarks (1st, 10th, 20th, ..., 90th, 99th
    percentiles, and 0 -> 0) land on the training subjects' mean landmarks (each in its own
    99th-percentile units); beyond the last landmark the last segment's slope continues.  A
    T1w whose grey and white matter sit closer together or further apart than the training
    T1w's is brought to the training contrast, not only to its scale.  The T2w (target) is
    scaled as in ``percentile``: a prediction must map back to intensities by one factor.
``foreground``
    Each volume divided by the 99th percentile of its foreground (the voxels above its mean), clipped to
    [0, 3]: scale-free without a brain mask, for heads (noisy background) and skull-stripped brains (zero
    background) alike.  The segmenter's, which has no brain mask to go by; not a choice for T2w synthesis.

Every transform is ``x * scale + shift`` (after the piecewise-linear map for ``histogram``; clipped for
``foreground``), with per-subject factors computed from the intensity statistics of the volume (stored in the
prepared cache, :mod:`mrsynth.data.cache`, for training subjects).  A model's description says which method it
uses and where the statistics come from (:class:`~mrsynth.networks.inputs.InputSpec`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from ..atomic import write_text

#: The methods a synthesis model can be trained with (``data.norm``).
SYNTHESIS_METHODS = ("robust", "paper", "percentile", "histogram")
#: Every method a model description may name: the synthesis ones and the segmenter's.
NORMALIZATIONS = SYNTHESIS_METHODS + ("foreground",)
#: The per-volume statistic each scaling method divides by (the T2w's, for ``histogram``).
REFERENCE_STATISTIC = {
    "robust": "brain_median",
    "percentile": "brain_p99",
    "histogram": "brain_p99",
    "foreground": "foreground_p99",
}
#: ``foreground`` clips the scaled volume to this range.
FOREGROUND_RANGE = (0.0, 3.0)
#: Percentiles inside the brain that ``histogram`` standardizes (besides 0 -> 0).
LANDMARK_PERCENTILES = (1, 10, 20, 30, 40, 50, 60, 70, 80, 90, 99)


@dataclass(frozen=True)
class Transform:
    """One subject's intensity map for one contrast: ``x -> f(x) * scale + shift``.

    ``f`` is the identity, or (``knots_in`` given) the piecewise-linear map through
    ``(knots_in[i], knots_out[i])``, continued linearly beyond both ends.
    """

    scale: float = 1.0
    shift: float = 0.0
    knots_in: tuple[float, ...] = ()
    knots_out: tuple[float, ...] = ()
    clip: tuple[float, float] | None = None  # the result clipped to this range

    def __call__(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, np.float32)
        if self.knots_in:
            xs, ys = np.asarray(self.knots_in), np.asarray(self.knots_out)
            mapped = np.interp(values, xs, ys)
            below, above = values < xs[0], values > xs[-1]
            mapped[below] = ys[0] + (values[below] - xs[0]) * (ys[1] - ys[0]) / (xs[1] - xs[0])
            mapped[above] = ys[-1] + (values[above] - xs[-1]) * (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
            values = mapped.astype(np.float32)
        values = values * np.float32(self.scale) + np.float32(self.shift)
        return values if self.clip is None else np.clip(values, *self.clip)


@dataclass(frozen=True)
class Normalization:
    method: str = "robust"
    t1_offset: float = 0.0  # paper: training-set mean T1w intensity
    t2_offset: float = 0.0  # paper: training-set mean T2w intensity
    t2_reference_scale: float = 1.0  # robust / percentile / histogram: mean training T2w brain median / p99
    t1_landmarks: tuple[float, ...] = ()  # histogram: mean training T1w landmarks, in 99th-percentile units

    def __post_init__(self):
        if self.method not in NORMALIZATIONS:
            raise ValueError(f"unknown normalization {self.method!r}; choose one of {NORMALIZATIONS}")
        object.__setattr__(self, "t1_landmarks", tuple(self.t1_landmarks))
        if self.method == "histogram" and len(self.t1_landmarks) != len(LANDMARK_PERCENTILES):
            raise ValueError(f"histogram normalization needs {len(LANDMARK_PERCENTILES)} T1w landmarks")

    @classmethod
    def fit(cls, method: str, stats: list[Mapping[str, Mapping[str, float]]]) -> "Normalization":
        """Fit on the intensity statistics of the training subjects (``subject.json['stats']``)."""
        if not stats:
            raise ValueError("normalization needs at least one training subject")
        if any("t2" not in s for s in stats):
            raise ValueError("every training subject needs a T2w image")
        if method == "paper":
            return cls(method, _weighted_mean(stats, "t1"), _weighted_mean(stats, "t2"))
        if method in REFERENCE_STATISTIC:
            references = [s["t2"][REFERENCE_STATISTIC[method]] for s in stats]
            landmarks = ()
            if method == "histogram":
                scaled = [np.asarray(_landmarks(s)) / _positive_reference(s, "t1", "brain_p99") for s in stats]
                landmarks = tuple(float(v) for v in np.mean(scaled, axis=0))
            return cls(method, t2_reference_scale=sum(references) / len(references), t1_landmarks=landmarks)
        raise ValueError(f"unknown normalization {method!r}; choose one of {NORMALIZATIONS}")

    def transform(self, contrast: str, stats: Mapping[str, Mapping[str, float]]) -> Transform:
        """The map from raw to normalized intensities of one subject's contrast (``"t1"`` or ``"t2"``)."""
        if self.method == "paper":
            return Transform(shift=-(self.t1_offset if contrast == "t1" else self.t2_offset))
        if self.method == "histogram" and contrast == "t1":
            _positive_reference(stats, contrast, "brain_p99")
            knots = np.maximum.accumulate(np.asarray((0.0,) + _landmarks(stats)))
            knots = knots + 1e-6 * np.abs(knots).max() * np.arange(len(knots))  # strictly increasing
            return Transform(knots_in=tuple(float(k) for k in knots), knots_out=(0.0,) + self.t1_landmarks)
        scale = 1.0 / _positive_reference(stats, contrast, REFERENCE_STATISTIC[self.method])
        return Transform(scale=scale, clip=FOREGROUND_RANGE if self.method == "foreground" else None)

    def transform_volume(self, contrast: str, volume: np.ndarray, brain: np.ndarray | None = None) -> Transform:
        """:meth:`transform` with the statistics computed from ``volume`` itself (inside ``brain``; the whole volume
        where there is no brain mask): what a model applies to an input that was not prepared."""
        if self.method == "foreground":
            return self.transform(contrast, {contrast: foreground_stats(volume)})
        inside = brain if brain is not None else np.ones(np.shape(volume), bool)
        return self.transform(contrast, {contrast: intensity_stats(volume, inside)})

    def to_intensity(self) -> tuple[float, float]:
        """``(scale, shift)`` mapping a normalized T2w prediction back to intensity units."""
        if self.method == "paper":
            return 1.0, self.t2_offset
        return self.t2_reference_scale, 0.0

    def save(self, path: str | Path) -> None:
        write_text(path, json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "Normalization":
        return cls(**json.loads(Path(path).read_text()))


def _weighted_mean(stats, contrast: str) -> float:
    total = sum(s[contrast]["mean"] * s[contrast]["voxels"] for s in stats)
    return total / sum(s[contrast]["voxels"] for s in stats)


def _landmarks(stats) -> tuple[float, ...]:
    """A subject's T1w landmarks (``LANDMARK_PERCENTILES`` inside the brain) from its statistics."""
    t1 = stats["t1"]
    if "brain_deciles" not in t1:
        raise ValueError(
            "histogram normalization needs the T1w's brain deciles, which this subject's statistics "
            "lack (prepared by an older mrsynth): prepare it again"
        )
    return (t1["brain_p01"], *t1["brain_deciles"], t1["brain_p99"])


def _method_of(statistic: str) -> str:
    """The normalization a statistic belongs to, as a user names it."""
    return {"brain_median": "robust", "brain_p99": "percentile", "foreground_p99": "foreground"}.get(statistic, "")


def _positive_reference(stats, contrast: str, statistic: str) -> float:
    value = stats[contrast][statistic]
    if not value > 0:
        contrast_name = {"t1": "T1w", "t2": "T2w"}.get(contrast, contrast)
        raise ValueError(
            f"the {contrast_name}'s {statistic.replace('_', ' ')} inside the brain mask is {value:.4g}, and the "
            f"{_method_of(statistic)} normalization divides by it: is the mask the brain's (not mostly "
            "background), and the image a magnitude image?"
        )
    return value


def foreground_stats(volume: np.ndarray) -> dict[str, float]:
    """The 99th percentile of the foreground (the voxels above the volume's mean), 1 where there is none: what
    ``foreground`` divides by."""
    volume = np.asarray(volume, np.float32)
    foreground = volume[volume > volume.mean()]
    scale = float(np.percentile(foreground, 99)) if foreground.size else 1.0
    return {"foreground_p99": scale if scale > 0 else 1.0}


def intensity_stats(volume: np.ndarray, brain: np.ndarray) -> dict[str, float]:
    """The statistics a normalization is fitted and applied with: whole-volume mean and size, and inside the
    ``brain`` mask the mean, median, 1st/99th percentiles and deciles (histogram landmarks)."""
    inside = volume[brain]
    p01, *deciles, p99 = (float(v) for v in np.percentile(inside, [1, *range(10, 100, 10), 99]))  # one partition
    return {
        "mean": float(volume.mean(dtype=np.float64)),
        "voxels": int(volume.size),
        "brain_mean": float(inside.mean(dtype=np.float64)),
        "brain_median": deciles[4],
        "brain_p01": p01,
        "brain_deciles": deciles,
        "brain_p99": p99,
        "min": float(volume.min()),
        "max": float(volume.max()),
    }
