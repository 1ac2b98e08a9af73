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
def patch_errors(
    model: torch.nn.Module, dataset: PatchDataset, batch_size: int, device, limit: int = 0, seed: int = 0
) -> dict[str, np.ndarray]:
    """Per test patch: its item, its subject's position, and the summed squared error and pixel count, over every
    pixel and over brain pixels (normalized units, eval mode, the whole dataset or a seeded subset of ``limit``).

    Kept per patch so that an experiment can resample patches or subjects (bootstrap confidence intervals).
    """
    order = _evaluation_order(len(dataset), limit, seed)
    model.eval()
    sums: dict[str, list] = {"sse": [], "pixels": [], "brain_sse": [], "brain_pixels": []}
    for start in range(0, len(order), batch_size):
        items = order[start : start + batch_size]
        inputs, target = dataset[items]
        brain = torch.from_numpy(dataset.brain_windows(items))[:, None].to(device)
        error = (model(inputs.to(device)) - target.to(device)) ** 2
        sums["sse"].append(error.sum(dim=(1, 2, 3)).double().cpu().numpy())
        sums["pixels"].append(np.full(len(items), error[0].numel()))
        sums["brain_sse"].append((error * brain).sum(dim=(1, 2, 3)).double().cpu().numpy())
        sums["brain_pixels"].append(brain.sum(dim=(1, 2, 3)).cpu().numpy())
    errors = {k: np.concatenate(v) if v else np.zeros(0) for k, v in sums.items()}
    errors["item"] = np.asarray(order, dtype=np.int64)
    errors["subject"] = dataset.locate_many(order)[0]
    return errors


def patch_losses(
    model: torch.nn.Module, dataset: PatchDataset, batch_size: int, device, limit: int = 0, seed: int = 0
) -> dict:
    """The paper's patch MSE (every pixel of every patch) and the MSE over brain pixels only.

    Normalized units; eval mode; over the whole dataset or a seeded subset of ``limit`` patches.
    """
    return pooled_losses(patch_errors(model, dataset, batch_size, device, limit, seed))


def pooled_losses(errors: dict[str, np.ndarray]) -> dict:
    """:func:`patch_errors` pooled: the MSE over all pixels and over brain pixels, and the number of patches."""
    return {
        "mse": float(errors["sse"].sum() / max(errors["pixels"].sum(), 1)),
        "mse_brain": float(errors["brain_sse"].sum() / max(errors["brain_pixels"].sum(), 1)),
        "patches": len(errors["item"]),
    }


def mean_loss(
    model: torch.nn.Module, dataset: PatchDataset, batch_size: int, device, limit: int = 0, seed: int = 0
) -> float:
    """Mean per-pixel MSE of the model (eval mode) over a dataset (or a seeded subset)."""
    return patch_losses(model, dataset, batch_size, device, limit, seed)["mse"]
