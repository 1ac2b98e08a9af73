"""The paper's fully convolutional network (section 4.1).

``layers - 1`` blocks of Conv2D(32 filters, 3x3, same padding) -> BatchNormalization ->
ReLU, then one Conv2D(1 filter, 3x3).  BatchNorm uses the Keras settings the paper quotes
(momentum 0.99, i.e. PyTorch ``momentum=0.01``; epsilon 1e-3), and weights get Keras'
default initialisation (Glorot-uniform kernels, zero biases).
"""

from __future__ import annotations

import torch
from torch import nn

from ..checks import Range

KERAS_BN_MOMENTUM = 0.01  # Keras momentum 0.99 in PyTorch's convention
KERAS_BN_EPS = 1e-3


class FCN(nn.Module):
    """``layers`` 3x3 convolutions: (layers - 1) x [Conv-BN-ReLU], then Conv to one channel."""

    kind = "fcn"
    parameter_docs = {
        "layers": "convolution layers (the paper: 3 or 9)",
        "width": "filters per hidden layer (the paper: 32)",
    }
    parameter_checks = {"layers": Range(2, 100), "width": Range(1, 1024)}

    def __init__(self, layers: int = 9, in_channels: int = 9, width: int = 32):
        super().__init__()
        if layers < 2:
            raise ValueError(f"the network needs at least 2 layers, got {layers}")
        if width < 1:
            raise ValueError(f"the network needs at least 1 filter per layer, got {width}")
        blocks: list[nn.Module] = []
        channels = in_channels
        for _ in range(layers - 1):
            blocks += [
                nn.Conv2d(channels, width, 3, padding=1),
                nn.BatchNorm2d(width, eps=KERAS_BN_EPS, momentum=KERAS_BN_MOMENTUM),
                nn.ReLU(inplace=True),
            ]
            channels = width
        blocks.append(nn.Conv2d(channels, 1, 3, padding=1))
        self.layers = nn.Sequential(*blocks)
        self.n_layers, self.in_channels, self.width = layers, in_channels, width
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Keras defaults: Glorot-uniform kernels, zero biases; BN gamma 1, beta 0."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                module.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    @property
    def receptive_field(self) -> int:
        return 2 * self.n_layers + 1

    @property
    def receptive_radius(self) -> int:
        """Pixels on each side of an output pixel that can change it (one per 3x3 convolution)."""
        return self.n_layers
