"""Honest baselines: what a lookup table does without any learning of spatial context.

Both take the network's own 9-channel input (normalized T1w + eight masks coded -1/+1)
and return a normalized T2w, so they are trained, saved, run and scored exactly like the
network (:mod:`mrsynth.predict`, :mod:`mrsynth.metrics`).  A network that does not beat
them has learned nothing a lookup table can't do.

* :class:`TissueMean`: each voxel gets the mean training T2w of its tissue group (one of
  the seven exclusive tissue classes, inside or outside the brain mask: 14 groups).
* :class:`IntensityMap`: a per-voxel T1w -> T2w regression, piecewise linear through the
  mean T2w of each of 64 T1w quantile bins of the training voxels.

Both are fitted on (a seeded random subset of) the run's training patches, so a
within-subject split never lets them see test pixels.

They are a separate module from :mod:`mrsynth.metrics` because they are predictors with
fitted parameters and model files, not scores.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn
from . import labels
from .patches import PatchDataset, batch_loader

N_TISSUE = len(labels.CLASSES) - 1  # the exclusive classes (all but "brain")


def tissue_group(masks: torch.Tensor) -> torch.Tensor:
    """Group index 0..13 from the eight mask channels ``(B, 8, H, W)``: 2 * tissue + brain."""
    tissue = torch.argmax(masks[:, 1:], dim=1)
    brain = (masks[:, labels.BIT["brain"]] > 0).long()
    return 2 * tissue + brain


class TissueMean(nn.Module):
    kind = "tissue-mean"

    def __init__(self, table: torch.Tensor | None = None):
        super().__init__()
        self.register_buffer("table", torch.zeros(2 * N_TISSUE) if table is None else table.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.table[tissue_group(x[:, 1:])].unsqueeze(1)

    @classmethod
    def fit(cls, dataset: PatchDataset, max_patches: int = 2000, seed: int = 0) -> "TissueMean":
        sums = torch.zeros(2 * N_TISSUE, dtype=torch.float64)
        counts = torch.zeros(2 * N_TISSUE, dtype=torch.float64)
        for inputs, target in _training_batches(dataset, max_patches, seed):
            group = tissue_group(inputs[:, 1:]).ravel()
            sums += torch.bincount(group, weights=target[:, 0].ravel().double(), minlength=2 * N_TISSUE)
            counts += torch.bincount(group, minlength=2 * N_TISSUE).double()
        overall = sums.sum() / counts.sum()
        return cls(torch.where(counts > 0, sums / counts.clamp(min=1), overall).float())


class IntensityMap(nn.Module):
    kind = "intensity-map"

    def __init__(self, knots_x: torch.Tensor | None = None, knots_y: torch.Tensor | None = None, bins: int = 64):
        super().__init__()
        self.register_buffer("knots_x", torch.linspace(0, 1, bins) if knots_x is None else knots_x.float().contiguous())
        self.register_buffer("knots_y", torch.zeros(bins) if knots_y is None else knots_y.float().contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t1 = x[:, :1].contiguous()
        kx, ky = self.knots_x, self.knots_y
        right = torch.clamp(torch.bucketize(t1, kx), 1, len(kx) - 1)
        x0, x1, y0, y1 = kx[right - 1], kx[right], ky[right - 1], ky[right]
        weight = torch.clamp((t1 - x0) / torch.clamp(x1 - x0, min=1e-12), 0, 1)
        return y0 + weight * (y1 - y0)

    @classmethod
    def fit(cls, dataset: PatchDataset, max_patches: int = 2000, seed: int = 0, bins: int = 64) -> "IntensityMap":
        xs, ys = [], []
        for inputs, target in _training_batches(dataset, max_patches, seed):
            xs.append(inputs[:, 0].ravel().numpy())
            ys.append(target[:, 0].ravel().numpy())
        x, y = np.concatenate(xs).astype(np.float64), np.concatenate(ys).astype(np.float64)
        edges = np.unique(np.quantile(x, np.linspace(0, 1, bins + 1)))
        which = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(edges) - 2)
        counts = np.bincount(which, minlength=len(edges) - 1)
        keep = counts > 0
        centres = np.bincount(which, weights=x, minlength=len(edges) - 1)[keep] / counts[keep]
        means = np.bincount(which, weights=y, minlength=len(edges) - 1)[keep] / counts[keep]
        return cls(torch.tensor(centres, dtype=torch.float32), torch.tensor(means, dtype=torch.float32))


BASELINES = {TissueMean.kind: TissueMean, IntensityMap.kind: IntensityMap}


def _training_batches(dataset: PatchDataset, max_patches: int, seed: int):
    """Up to ``max_patches`` training patches (a seeded random subset), in batches."""
    count = min(len(dataset), max_patches) if max_patches else len(dataset)
    order = np.random.default_rng(seed).permutation(len(dataset))[:count].tolist()
    return batch_loader(dataset, order, 64)


def fit_for_run(run_dir: str | Path, max_patches: int = 2000) -> dict[str, Path]:
    """Fit both baselines on a run's training patches, with its normalization; save as model folders.

    Written to ``RUN/baselines/<kind>/`` in the model format, so ``mrsynth predict`` and
    ``mrsynth evaluate`` treat them exactly like the network.
    """
    from .models import ModelInfo, save_model
    from .patches import Split
    from .train import build_data, resume_config

    run_dir = Path(run_dir)
    config = resume_config(run_dir)
    data = build_data(config, Split.load(run_dir / "split.json"))
    if config.data.channels != 1 + len(labels.CLASSES):
        config.data.channels = 1 + len(labels.CLASSES)  # baselines read the tissue masks
        data = build_data(config, data.split)
    written = {}
    for cls in (TissueMean, IntensityMap):
        model = cls.fit(data.train, max_patches, config.seed)
        info = ModelInfo(n_layers=0, in_channels=config.data.channels, width=0,
                         normalization=asdict(data.normalization), patch_size=data.grid.size,
                         stride=data.grid.stride, axis=data.train.parts[0].subject.meta["axis_request"],
                         kind=cls.kind, training={"subjects": data.split.train,
                                                  "patches": min(len(data.train), max_patches)})
        written[cls.kind] = save_model(run_dir / "baselines" / cls.kind, model, info)
    return written
