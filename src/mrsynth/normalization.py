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

Every transform is ``x * scale + shift``, with per-subject factors computed from
the intensity statistics stored in the prepared cache (:mod:`mrsynth.cache`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping

from .atomic import write_text

METHODS = ("robust", "paper", "percentile")
#: The per-volume statistic each scaling method divides by.
REFERENCE_STATISTIC = {"robust": "brain_median", "percentile": "brain_p99"}


@dataclass(frozen=True)
class Normalization:
    method: str = "robust"
    t1_offset: float = 0.0  # paper: training-set mean T1w intensity
    t2_offset: float = 0.0  # paper: training-set mean T2w intensity
    t2_reference_scale: float = 1.0  # robust / percentile: mean training T2w brain median / 99th percentile

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown normalization {self.method!r}; choose one of {METHODS}")

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
            return cls(method, t2_reference_scale=sum(references) / len(references))
        raise ValueError(f"unknown normalization {method!r}; choose one of {METHODS}")

    def transform(self, contrast: str, stats: Mapping[str, Mapping[str, float]]) -> tuple[float, float]:
        """``(scale, shift)`` with ``normalized = raw * scale + shift`` for one subject's contrast."""
        if self.method == "paper":
            return 1.0, -(self.t1_offset if contrast == "t1" else self.t2_offset)
        return 1.0 / _positive_reference(stats, contrast, REFERENCE_STATISTIC[self.method]), 0.0

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


def _positive_reference(stats, contrast: str, statistic: str) -> float:
    value = stats[contrast][statistic]
    if not value > 0:
        raise ValueError(
            f"{contrast} {statistic.replace('_', ' ')} inside the brain mask is {value}; this normalization "
            "needs positive intensities (use --norm paper for signed data)"
        )
    return value
