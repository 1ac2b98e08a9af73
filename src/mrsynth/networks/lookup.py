"""Lookup-table predictors: the baselines' networks, without spatial context.

Both take the network's own 9-channel input (normalized T1w + eight masks coded -1/+1)
and return a normalized T2w, so they are saved, run and scored exactly like a network.
Their fitting lives in :mod:`mrsynth.training.baselines`; here they are only functions of their
stored tables, so a model file can be loaded without importing any training code.

* :class:`TissueMean`: each voxel gets a table value for its tissue group (one of the
  seven exclusive tissue classes, inside or outside the brain mask: 14 groups).
* :class:`IntensityMap`: a per-voxel T1w -> T2w map, piecewise linear through knots.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import labels

N_TISSUE = len(labels.CLASSES) - 1  # the exclusive classes (all but "brain")
N_GROUPS = 2 * N_TISSUE


def tissue_group(masks: torch.Tensor) -> torch.Tensor:
    """Group index 0..13 from the eight mask channels ``(B, 8, H, W)``: 2 * tissue + brain."""
    tissue = torch.argmax(masks[:, 1:], dim=1)
    brain = (masks[:, labels.BIT["brain"]] > 0).long()
    return 2 * tissue + brain


class TissueMean(nn.Module):
    kind = "tissue-mean"
    trainable = False  # fitted in closed form (mrsynth.training.baselines)
    in_channels = 9  # reads the tissue masks
    receptive_radius = 0  # voxel by voxel

    def __init__(self, table: torch.Tensor | None = None):
        super().__init__()
        self.register_buffer("table", torch.zeros(N_GROUPS) if table is None else table.float())

    @classmethod
    def from_state(cls, state: dict) -> TissueMean:
        return cls(state["table"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.table[tissue_group(x[:, 1:])].unsqueeze(1)


class IntensityMap(nn.Module):
    kind = "intensity-map"
    trainable = False  # fitted in closed form (mrsynth.training.baselines)
    in_channels = 1  # reads the T1w only
    brain_only = True  # fitted on brain voxels: its prediction outside the brain is 0, not a guess
    receptive_radius = 0  # voxel by voxel

    def __init__(self, knots_x: torch.Tensor | None = None, knots_y: torch.Tensor | None = None, bins: int = 64):
        super().__init__()
        self.register_buffer("knots_x", torch.linspace(0, 1, bins) if knots_x is None else knots_x.float().contiguous())
        self.register_buffer("knots_y", torch.zeros(bins) if knots_y is None else knots_y.float().contiguous())

    @classmethod
    def from_state(cls, state: dict) -> IntensityMap:
        return cls(state["knots_x"], state["knots_y"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t1 = x[:, :1].contiguous()
        kx, ky = self.knots_x, self.knots_y
        right = torch.clamp(torch.bucketize(t1, kx), 1, len(kx) - 1)
        x0, x1, y0, y1 = kx[right - 1], kx[right], ky[right - 1], ky[right]
        weight = torch.clamp((t1 - x0) / torch.clamp(x1 - x0, min=1e-12), 0, 1)
        return y0 + weight * (y1 - y0)
