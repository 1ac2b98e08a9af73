"""A model as a user holds it: a network or lookup table with its description, that predicts volumes.

The other half of the fit/predict protocol of :mod:`mrsynth.training.methods`: whatever made it (a trained
network or a fitted lookup table), a :class:`Model` loads from and saves to a model folder
(:mod:`mrsynth.networks.modelfile`) and predicts a whole volume the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import nn

from ..data import PreparedSubject
from ..networks import ModelInfo, load_model, save_model
from .predict import predict_arrays, predict_prepared


@dataclass
class Model:
    network: nn.Module
    info: ModelInfo
    folder: Path | None = None

    @classmethod
    def load(cls, folder: str | Path, device="cpu") -> Model:
        network, info = load_model(folder, device)
        return cls(network, info, Path(folder))

    def save(self, folder: str | Path) -> Path:
        self.folder = save_model(folder, self.network, self.info)
        return self.folder

    @property
    def kind(self) -> str:
        return self.info.kind

    def predict(self, subject: PreparedSubject, **options) -> np.ndarray:
        """The T2w of a prepared subject, in its source file's axis order (``options``: see
        :func:`~.predict.predict_prepared`)."""
        return predict_prepared(self.network, self.info, subject, **options)

    def predict_volume(
        self,
        t1: np.ndarray,
        affine: np.ndarray,
        seg: np.ndarray | None = None,
        mask: np.ndarray | None = None,
        **options,
    ) -> np.ndarray:
        """The T2w of an in-memory T1w (with the segmentation and brain mask the model needs)."""
        return predict_arrays(self.network, self.info, t1, affine, seg, mask, **options)
