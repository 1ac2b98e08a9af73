"""Training losses, and the paper's patch losses by which validation and test patches are scored.

The paper scores a model by the mean squared error over every pixel of every test patch (section 5); we give it
beside the MSE over brain pixels only, both in normalized units, with the network in eval mode.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..data import PatchDataset
from ..errors import InputError

LOSSES = ("mse", "l1", "l1+ssim")


def loss_function(name: str, data_range: float = 4.0):
    """The training loss: ``mse`` (the paper), ``l1``, or ``l1+ssim`` (L1 + 0.5 (1 - SSIM), MONAI's SSIM).

    ``data_range`` is SSIM's dynamic range in normalized units (robust normalization: brain
    median 1, CSF in T2w up to about 3-4).
    """
    if name == "mse":
        return F.mse_loss
    if name == "l1":
        return F.l1_loss
    if name == "l1+ssim":
        from monai.losses import SSIMLoss

        ssim = SSIMLoss(spatial_dims=2, data_range=data_range, win_size=7)
        return lambda prediction, target: F.l1_loss(prediction, target) + 0.5 * ssim(prediction, target)
    raise InputError(f"optim.loss must be one of {', '.join(LOSSES)}, got {name!r}")


def _evaluation_order(n: int, limit: int, seed: int) -> list[int]:
    if limit and limit < n:
        return sorted(np.random.default_rng(seed).choice(n, limit, replace=False).tolist())
    return list(range(n))


@torch.no_grad()
def patch_losses(
    model: torch.nn.Module, dataset: PatchDataset, batch_size: int, device, limit: int = 0, seed: int = 0
) -> dict:
    """The paper's patch MSE (every pixel of every patch) and the MSE over brain pixels only.

    Normalized units; eval mode; over the whole dataset or a seeded subset of ``limit`` patches.
    """
    order = _evaluation_order(len(dataset), limit, seed)
    model.eval()
    total = brain_total = 0.0
    count = brain_count = 0
    for start in range(0, len(order), batch_size):
        items = order[start : start + batch_size]
        inputs, target = dataset[items]
        brain = torch.from_numpy(dataset.brain_windows(items))[:, None].to(device)
        error = (model(inputs.to(device)) - target.to(device)) ** 2
        total += error.sum().item()
        count += error.numel()
        brain_total += error[brain].sum().item()
        brain_count += int(brain.sum())
    return {"mse": total / max(count, 1), "mse_brain": brain_total / max(brain_count, 1), "patches": len(order)}


def mean_loss(
    model: torch.nn.Module, dataset: PatchDataset, batch_size: int, device, limit: int = 0, seed: int = 0
) -> float:
    """Mean per-pixel MSE of the model (eval mode) over a dataset (or a seeded subset)."""
    return patch_losses(model, dataset, batch_size, device, limit, seed)["mse"]
