"""One protocol for every way of making a model from a run's training subjects, scikit-learn's: ``fit`` returns a
:class:`~mrsynth.inference.Model`, which predicts volumes, saves and loads alike whatever made it.

* :class:`Network`: a network trained by gradient descent (:func:`~.trainer.train`) into the run folder.
* :class:`Lookup`: a lookup table fitted in closed form (:mod:`.baselines`) on the training subjects, split and
  normalization of a run folder that a :class:`Network` made, into ``RUN/baselines/<kind>``.

Cross-validation, the paper's experiment grid and the demo fit and predict with each method the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..inference import Model
from . import runs
from .baselines import KINDS, fit_lookup
from .config import TrainConfig
from .trainer import train_or_reuse


class Method(Protocol):
    name: str

    def fit(self, run: Path, progress: bool = True) -> Model:
        """Fit on the training subjects of the run folder ``run``; the fitted model is saved under it."""


@dataclass
class Network:
    """A network trained with ``config``; a finished run in the folder is reused, an unfinished one resumed."""

    config: TrainConfig
    name: str = "network"

    def fit(self, run: Path, progress: bool = True) -> Model:
        train_or_reuse(self.config, run, progress)
        return Model.load(Path(run) / runs.MODEL)


@dataclass
class Lookup:
    """The lookup baseline ``kind`` (``tissue-mean`` or ``intensity-map``), fitted on a run's training data."""

    kind: str
    max_patches: int = 2000

    @property
    def name(self) -> str:
        return self.kind

    def fit(self, run: Path, progress: bool = True) -> Model:
        return Model.load(fit_lookup(run, self.kind, self.max_patches))


def with_baselines(network: Network) -> dict[str, Method]:
    """A network and both lookup baselines, by name, in the order to fit them (the network makes the run)."""
    return {network.name: network, **{kind: Lookup(kind) for kind in KINDS}}
