"""Training-time augmentation of a batch: T1w contrast (gamma, bias field, noise) and pose (flips, rotation, zoom).

A model trained on one site's T1w learns that site's contrast; at another site (another
sequence, coil, scaling) the same tissue has another T1w intensity and the prediction's
contrast goes wrong.  Random per-patch changes of the T1w contrast make the network rely on
relative intensities and anatomy instead.  Only the T1w channels change (the tissue masks and
the target T2w keep their values); pose changes move input and target together.  Apart from those, the masks
alone can be displaced (``mask_jitter``), so that a masked model learns to check them against the T1w, as it
must with automatic masks.

Vectorized over the batch with torch's global random generator, which the trainer's
checkpoints save: a resumed run draws the same augmentations as an uninterrupted one.
Meant for the scaling normalizations (``robust``, ``percentile``: background 0, brain positive).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .config import AugmentConfig

BIAS_GRID = 4  # control points per side of the smooth bias field


def is_active(config: AugmentConfig) -> bool:
    return bool(config.gamma or config.bias or config.noise or config.flips or config.erode
                or config.rotate or config.scale or config.mask_jitter)


def needs_scaled_intensities(config: AugmentConfig) -> bool:
    """Whether an active augmentation assumes a T1w scaled from a zero background (gamma and bias act on
    intensities, noise is sized for them, erosion and rotation or zoom fill with 0); flips and ``mask_jitter``
    work on any normalization."""
    return bool(config.gamma or config.bias or config.noise or config.erode or config.rotate or config.scale)


def _erode_edges(t1: torch.Tensor, most: int) -> torch.Tensor:
    """Zero a band of 0..``most`` pixels (drawn per patch) along the edge of a stripped T1w's nonzero region."""
    inside = (t1 != 0).float()
    widths = torch.randint(0, most + 1, (len(t1),))
    keep = torch.ones_like(inside)
    for width in range(1, most + 1):
        chosen = (widths == width).to(t1.device)
        if chosen.any():
            eroded = -F.max_pool2d(-inside[chosen], 2 * width + 1, stride=1, padding=width)
            keep[chosen] = eroded
    return t1 * keep


def _rotate_and_zoom(inputs: torch.Tensor, target: torch.Tensor, degrees: float,
                     zoom: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random in-plane rotation and zoom (per patch, about its centre) of input and target.

    Bilinear resampling; what comes in from outside the patch is background (0).
    """
    batch = len(inputs)
    angle = torch.empty(batch).uniform_(-degrees, degrees) * (math.pi / 180)
    factor = 1 + torch.empty(batch).uniform_(-zoom, zoom)
    cos, sin = torch.cos(angle) / factor, torch.sin(angle) / factor
    aspect = inputs.shape[2] / inputs.shape[3]  # height / width: a rotation of pixels, not of [-1, 1] coordinates
    theta = torch.stack([torch.stack([cos, -sin * aspect, torch.zeros(batch)], 1),
                         torch.stack([sin / aspect, cos, torch.zeros(batch)], 1)], 1).to(inputs)
    both = torch.cat([inputs, target], 1)
    grid = F.affine_grid(theta, list(both.shape), align_corners=False)
    moved = F.grid_sample(both, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return moved[:, :inputs.shape[1]], moved[:, inputs.shape[1]:]


JITTER_GRID = 8  # control points per side of the mask displacement field


def _jitter_masks(masks: torch.Tensor, most: float) -> torch.Tensor:
    """Masks resampled (nearest: they stay -1/+1) through a smooth random displacement field per patch, its
    largest component scaled to a length drawn uniformly in 0..``most`` pixels: boundaries move by up to that much,
    structures thicken, thin or merge where the field converges or diverges."""
    batch, _, height, width = masks.shape
    field = torch.randn(batch, 2, JITTER_GRID, JITTER_GRID)
    field = F.interpolate(field, size=(height, width), mode="bicubic", align_corners=True)
    length = torch.rand(batch, 1, 1, 1) * most
    field = field * length / field.abs().amax(dim=(1, 2, 3), keepdim=True).clamp(min=1e-6)
    yy, xx = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32),
                            indexing="ij")
    y = (yy + field[:, 0]) * (2 / max(height - 1, 1)) - 1
    x = (xx + field[:, 1]) * (2 / max(width - 1, 1)) - 1
    grid = torch.stack([x, y], dim=-1).to(masks)
    return F.grid_sample(masks, grid, mode="nearest", padding_mode="border", align_corners=True)


def augment_batch(inputs: torch.Tensor, target: torch.Tensor, config: AugmentConfig,
                  t1_channels: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Randomly changed copies of ``inputs`` ``(B, C, H, W)`` and ``target`` ``(B, 1, H, W)``."""
    inputs, target = inputs.clone(), target.clone()
    batch, _, height, width = inputs.shape
    if config.rotate or config.scale:
        inputs, target = _rotate_and_zoom(inputs, target, config.rotate, config.scale)
    t1 = inputs[:, :t1_channels]
    if config.erode:
        t1 = _erode_edges(t1, config.erode)
    if config.gamma:
        limit = math.log1p(config.gamma)
        exponent = torch.exp(torch.empty(batch, 1, 1, 1).uniform_(-limit, limit)).to(t1.device)
        t1 = t1.clamp(min=0) ** exponent
    if config.bias:
        grid = torch.randn(batch, 1, BIAS_GRID, BIAS_GRID).to(t1.device)
        smooth = F.interpolate(grid, size=(height, width), mode="bicubic", align_corners=True)
        t1 = t1 * torch.exp(config.bias * smooth)
    if config.noise:
        t1 = t1 + config.noise * torch.randn(t1.shape).to(t1.device)
    inputs[:, :t1_channels] = t1
    if config.mask_jitter and inputs.shape[1] > t1_channels:
        inputs[:, t1_channels:] = _jitter_masks(inputs[:, t1_channels:], config.mask_jitter)
    if config.flips:
        for dim in (2, 3):
            flip = (torch.rand(batch) < 0.5).to(inputs.device)
            inputs[flip] = inputs[flip].flip(dim)
            target[flip] = target[flip].flip(dim)
    return inputs, target
