"""BatchNorm for trained networks: recalibrated statistics, and folding into convolutions for inference."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches, max_batches: int = 100) -> int:
    """Recompute BatchNorm running statistics as a cumulative average over training batches.

    With the paper's momentum (0.01) the running averages need many hundreds of steps to
    forget their initial values; after a short run, eval-mode predictions collapse.  Here
    the statistics are reset and averaged with equal weight over up to ``max_batches``
    batches of the (frozen) trained network.  Returns the number of batches used.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    saved = [(m.momentum, m.training) for m in norms]
    was_training = model.training
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
        m.train()
    used = 0
    device = next(model.parameters()).device
    for inputs in batches:
        if used >= max_batches:
            break
        model(inputs.to(device))
        used += 1
    for m, (momentum, training) in zip(norms, saved):
        m.momentum = momentum
        m.train(training)
    model.train(was_training)
    return used


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An inference copy with every Conv -> BatchNorm pair of ``model.layers`` fused into one Conv.

    Uses PyTorch's ``fuse_conv_bn_eval``; the result computes the same function as the
    eval-mode model with one pass fewer over the activations per layer.  Models without a
    sequential ``layers`` stack (the lookup baselines) are returned unchanged, in eval mode.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    layers = getattr(model, "layers", None)
    if not isinstance(layers, nn.Sequential):
        return model.eval()
    layers = list(model.eval().layers)
    fused: list[nn.Module] = []
    i = 0
    while i < len(layers):
        if isinstance(layers[i], nn.Conv2d) and i + 1 < len(layers) and isinstance(layers[i + 1], nn.BatchNorm2d):
            fused.append(fuse_conv_bn_eval(layers[i], layers[i + 1]))
            i += 2
        else:
            fused.append(layers[i])
            i += 1
    return nn.Sequential(*fused).eval()


def inference_model(model: nn.Module, device: str | torch.device = "cpu", channels_last: bool = True) -> nn.Module:
    """The fast inference form: BatchNorm folded, on ``device``, channels-last memory layout."""
    fast = fold_batchnorm(model).to(device)
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    return fast
