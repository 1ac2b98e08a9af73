"""A stack of 3x3 convolutions computed exactly on a window of its input, the rest being background.

The paper's FCN (BatchNorm folded) is a plain stack of 3x3 convolutions with zero padding 1
and ReLUs.  Where a voxel is farther than ``l`` voxels from every non-background input voxel,
its activation after ``l`` layers equals the activation of a pure background slice at the same
place (image-edge effects included).  So if a window holds every voxel within ``R`` (the number
of convolutions) of the input's content, each layer can be computed on the window alone, its
input padded by one voxel of the background slice's activation at that layer (zeros outside the
image) instead of zeros: the window's output is the whole computation's, with no voxels lost
to a margin per layer.  The alternative, zero-padding a window grown by ``2R`` and keeping its
inner part, computes about a quarter more voxels on a brain.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def is_plain_stack(model: nn.Module) -> bool:
    """Whether ``model`` is 3x3, stride-1, zero-padding-1 convolutions and ReLUs, first and last a convolution."""
    if not isinstance(model, nn.Sequential) or not len(model):
        return False
    if not (isinstance(model[0], nn.Conv2d) and isinstance(model[-1], nn.Conv2d)):
        return False
    for layer in model:
        if isinstance(layer, nn.ReLU):
            continue
        if not (
            isinstance(layer, nn.Conv2d)
            and layer.kernel_size == (3, 3)
            and layer.stride == (1, 1)
            and layer.padding == (1, 1)
            and layer.dilation == (1, 1)
            and layer.padding_mode == "zeros"
        ):
            return False
    return True


class WindowedStack:
    """Runs a plain stack (:func:`is_plain_stack`) on windows of slices whose outside is background.

    Built from one background slice ``(1, C, H, W)``: its activations before every convolution,
    padded by one voxel of zeros, are kept as the padding of later windows; ``background`` is its
    output ``(1, 1, H, W)``.
    """

    def __init__(self, stack: nn.Sequential, background: torch.Tensor):
        if not is_plain_stack(stack):
            raise ValueError("WindowedStack needs a sequence of 3x3 convolutions (padding 1) and ReLUs")
        #: each convolution, and whether a ReLU follows it
        self.convs: list[tuple[nn.Conv2d, bool]] = []
        self.padding: list[torch.Tensor] = []
        activation = background
        for layer in stack:
            if isinstance(layer, nn.Conv2d):
                self.convs.append((layer, False))
                self.padding.append(F.pad(activation, (1, 1, 1, 1)))
            else:
                self.convs[-1] = (self.convs[-1][0], True)
            activation = layer(activation)
        self.radius = len(self.convs)
        self.background = activation

    def __call__(self, inputs: torch.Tensor, rows: slice, cols: slice) -> torch.Tensor:
        """The stack's output on ``inputs`` (the slices' window ``rows`` x ``cols``), as on the whole slices."""
        activation = inputs
        for layer, (conv, _) in enumerate(self.convs):
            padded = self._padded(activation.shape[0], activation.shape[1], layer, rows, cols)
            interior = padded[:, :, 1:-1, 1:-1]
            if layer and self.convs[layer - 1][1]:  # the ReLU written straight into the padded input: one pass
                torch.clamp(activation, min=0, out=interior)
            else:
                interior.copy_(activation)
            activation = F.conv2d(padded, conv.weight, conv.bias)
        return activation

    def _padded(self, n: int, channels: int, layer: int, rows: slice, cols: slice) -> torch.Tensor:
        """An input buffer for convolution ``layer``: its one-voxel ring holds the background's activation."""
        ring = self.padding[layer][:, :, rows.start : rows.stop + 2, cols.start : cols.stop + 2]
        out = torch.empty(
            (n, channels) + ring.shape[2:], dtype=ring.dtype, device=ring.device, memory_format=torch.channels_last
        )
        for edge in (0, -1):
            out[:, :, edge] = ring[:, :, edge]
            out[:, :, :, edge] = ring[:, :, :, edge]
        return out
