"""A network that predicts a correction to a lookup table: the table's robust contrast, the network's context.

Across subjects a plain T1w -> T2w lookup table (binned mean T2w per T1w intensity of the
training brains) keeps its accuracy: it has a few dozen numbers to fit.  A network fitted on
one or two subjects learns their contrast too well and carries a bias to the next subject
(measured: brain T2w 10 % too dark on held-out simulated subjects, where the table was
unbiased).  Here the table, fitted on the training subjects before training and then frozen,
gives the contrast; the network reads the T1w input and the table's prediction and adds what
the table cannot know (partial volume, anatomy, noise).  Untrained, the residual network adds
little and the prediction is the table's.
"""

from __future__ import annotations

import torch
from torch import nn

from .lookup import IntensityMap
from .registry import build


class LookupResidual(nn.Module):
    """``lookup(T1w) + net([inputs, lookup(T1w)])``: ``net`` takes one channel more than the model input."""

    def __init__(self, net: nn.Module, lookup: IntensityMap):
        super().__init__()
        self.net, self.lookup = net, lookup
        self.kind = net.kind
        if hasattr(net, "receptive_radius"):  # the table is voxel by voxel: the network's radius is the model's
            self.receptive_radius = net.receptive_radius

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = self.lookup(x[:, :1])
        return base + self.net(torch.cat([x, base], 1))


def build_network(kind: str, in_channels: int, params: dict | None = None, lookup: IntensityMap | None = None):
    """A fresh network of ``kind`` with its ``params``; with a fitted ``lookup`` table it predicts a correction to
    that table (:class:`LookupResidual`, one input channel more: the table's prediction)."""
    net = build(kind, in_channels + (lookup is not None), params)
    return net if lookup is None else LookupResidual(net, lookup)
