"""Training-time augmentation of a batch: T1w contrast (gamma, bias field, noise), pose (flips, rotation, zoom), masks.

A model trained on one site's T1w learns that site's contrast; at another site (another
sequence, coil, scaling) the same tissue has another T1w intensity and the prediction's
contrast goes wrong.  Random per-patch changes of the T1w contrast make the network rely on
relative intensities and anatomy instead.  Only the T1w channels change (the tissue masks and
the target T2w keep their values); pose changes move input and target together.  Apart from those, the masks
alone can be displaced (``mask_jitter``), so that a masked model learns to check them against the T1w, as it
must with automatic masks.

Each augmentation is one class (the TorchIO way) that declares its settings (the ``augment.*`` fields of a
training configuration, :data:`AugmentConfig`), whether it assumes a T1w scaled from a zero background, and
what it does.  They run in the order of :data:`AUGMENTATIONS`, vectorized over the batch with torch's global
random generator, which the trainer's checkpoints save: a resumed run draws the same augmentations as an
uninterrupted one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, make_dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..checks import Range


@dataclass(frozen=True)
class Setting:
    """One ``augment.<name>`` configuration field: its type, its default (off), its documentation line and its
    allowed values."""

    name: str
    kind: type
    default: Any
    doc: str
    check: Any = None  # the allowed values (mrsynth.checks)


class Augmentation:
    """A random change of a training batch, switched on by any of its ``settings`` being non-zero."""

    settings: tuple[Setting, ...] = ()
    #: acts on intensities, or fills with 0, so it needs a scaling normalization (background 0, brain positive)
    needs_scaled_intensities = True
    #: needs the T1w stripped outside the brain mask (``data.strip``)
    needs_strip = False

    def active(self, config) -> bool:
        return any(getattr(config, s.name) for s in self.settings)

    def __call__(self, batch: Batch, config) -> None:
        """Change ``batch`` in place."""
        raise NotImplementedError


@dataclass
class Batch:
    """A training batch being augmented: ``inputs`` ``(B, C, H, W)`` (the first ``t1_channels`` are T1w, the
    rest tissue masks) and ``target`` ``(B, 1, H, W)``."""

    inputs: torch.Tensor
    target: torch.Tensor
    t1_channels: int = 1

    @property
    def t1(self) -> torch.Tensor:
        return self.inputs[:, : self.t1_channels]

    @t1.setter
    def t1(self, value: torch.Tensor) -> None:
        self.inputs[:, : self.t1_channels] = value

    @property
    def masks(self) -> torch.Tensor:
        return self.inputs[:, self.t1_channels :]


class RotateZoom(Augmentation):
    """The same random in-plane rotation and zoom (per patch, about its centre) of input and target.

    Bilinear resampling, in one pass for both; what comes in from outside the patch is background (0).
    """

    settings = (
        Setting(
            "rotate",
            float,
            0.0,
            "in-plane rotation of input and target, uniform in +-this many degrees (0: off)",
            Range(0, 180),
        ),
        Setting(
            "scale",
            float,
            0.0,
            "in-plane zoom of input and target, uniform in 1 +- this fraction (0: off)",
            Range(0, 1, high_open=True),
        ),
    )

    def __call__(self, batch: Batch, config) -> None:
        inputs, target = batch.inputs, batch.target
        size = len(inputs)
        angle = torch.empty(size).uniform_(-config.rotate, config.rotate) * (math.pi / 180)
        factor = 1 + torch.empty(size).uniform_(-config.scale, config.scale)
        cos, sin = torch.cos(angle) / factor, torch.sin(angle) / factor
        aspect = inputs.shape[2] / inputs.shape[3]  # height / width: a rotation of pixels, not of [-1, 1] coordinates
        zero = torch.zeros(size)
        theta = torch.stack([torch.stack([cos, -sin * aspect, zero], 1), torch.stack([sin / aspect, cos, zero], 1)], 1)
        both = torch.cat([inputs, target], 1)
        grid = F.affine_grid(theta.to(inputs), list(both.shape), align_corners=False)
        moved = F.grid_sample(both, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        batch.inputs, batch.target = moved[:, : inputs.shape[1]].contiguous(), moved[:, inputs.shape[1] :].contiguous()


class Erode(Augmentation):
    """Zero a band of 0..``erode`` pixels (drawn per patch) along the edge of a stripped T1w's nonzero region."""

    settings = (
        Setting(
            "erode",
            int,
            0,
            "with data.strip: shrink the stripped T1w's edge by 0 to this many pixels per "
            "patch (a user's brain mask edge differs from the training masks')",
            Range(0, 32),
        ),
    )
    needs_strip = True

    def __call__(self, batch: Batch, config) -> None:
        t1 = batch.t1
        inside = (t1 != 0).float()
        widths = torch.randint(0, config.erode + 1, (len(t1),))
        keep = torch.ones_like(inside)
        for width in range(1, config.erode + 1):
            chosen = (widths == width).to(t1.device)
            if chosen.any():
                keep[chosen] = -F.max_pool2d(-inside[chosen], 2 * width + 1, stride=1, padding=width)
        batch.t1 = t1 * keep


class Gamma(Augmentation):
    """The T1w raised to a random power per patch: grey/white contrast stronger or milder."""

    settings = (
        Setting("gamma", float, 0.0, "T1w^g with log g uniform in +-log(1 + gamma) per patch (0: off)", Range(0, 10)),
    )

    def __call__(self, batch: Batch, config) -> None:
        limit = math.log1p(config.gamma)
        exponent = torch.exp(torch.empty(len(batch.inputs), 1, 1, 1).uniform_(-limit, limit)).to(batch.inputs.device)
        batch.t1 = batch.t1.clamp(min=0) ** exponent


BIAS_GRID = 4  # control points per side of the smooth bias field


class BiasField(Augmentation):
    """The T1w times a smooth random field per patch (receive-coil shading)."""

    settings = (
        Setting(
            "bias",
            float,
            0.0,
            "SD of a smooth multiplicative log bias field on the T1w per patch (0: off)",
            Range(0, 10),
        ),
    )

    def __call__(self, batch: Batch, config) -> None:
        size, _, height, width = batch.inputs.shape
        grid = torch.randn(size, 1, BIAS_GRID, BIAS_GRID).to(batch.inputs.device)
        smooth = F.interpolate(grid, size=(height, width), mode="bicubic", align_corners=True)
        batch.t1 = batch.t1 * torch.exp(config.bias * smooth)


class Noise(Augmentation):
    """Gaussian noise added to the T1w."""

    settings = (
        Setting(
            "noise", float, 0.0, "SD of Gaussian noise added to the T1w, in brain-median units (0: off)", Range(0, 10)
        ),
    )

    def __call__(self, batch: Batch, config) -> None:
        batch.t1 = batch.t1 + config.noise * torch.randn(batch.t1.shape).to(batch.inputs.device)


JITTER_GRID = 8  # control points per side of the mask displacement field


class MaskJitter(Augmentation):
    """Masks resampled (nearest: they stay -1/+1) through a smooth random displacement field per patch, its
    largest component scaled to a length drawn uniformly in 0..``mask_jitter`` pixels: boundaries move by up to
    that much, structures thicken, thin or merge where the field converges or diverges."""

    settings = (
        Setting(
            "mask_jitter",
            float,
            0.0,
            "displace the tissue-mask channels (not the T1w or target) by a "
            "smooth random field of up to this many pixels per patch (0: off): automatic masks' "
            "boundaries differ from the training masks'",
            Range(0, 32),
        ),
    )
    needs_scaled_intensities = False

    def __call__(self, batch: Batch, config) -> None:
        masks = batch.masks
        if not masks.shape[1]:
            return
        size, _, height, width = masks.shape
        displacement = torch.randn(size, 2, JITTER_GRID, JITTER_GRID)
        displacement = F.interpolate(displacement, size=(height, width), mode="bicubic", align_corners=True)
        length = torch.rand(size, 1, 1, 1) * config.mask_jitter
        displacement = displacement * length / displacement.abs().amax(dim=(1, 2, 3), keepdim=True).clamp(min=1e-6)
        yy, xx = torch.meshgrid(
            torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32), indexing="ij"
        )
        y = (yy + displacement[:, 0]) * (2 / max(height - 1, 1)) - 1
        x = (xx + displacement[:, 1]) * (2 / max(width - 1, 1)) - 1
        grid = torch.stack([x, y], dim=-1).to(masks)
        batch.inputs[:, batch.t1_channels :] = F.grid_sample(
            masks, grid, mode="nearest", padding_mode="border", align_corners=True
        )


class Flips(Augmentation):
    """Random left-right and up-down flips of input and target."""

    settings = (Setting("flips", bool, False, "random left-right and up-down flips of input and target"),)
    needs_scaled_intensities = False

    def __call__(self, batch: Batch, config) -> None:
        for dim in (2, 3):
            flip = (torch.rand(len(batch.inputs)) < 0.5).to(batch.inputs.device)
            batch.inputs[flip] = batch.inputs[flip].flip(dim)
            batch.target[flip] = batch.target[flip].flip(dim)


#: Every augmentation, in the order they are applied (one pose resampling first, the masks and flips last).
AUGMENTATIONS = (RotateZoom(), Erode(), Gamma(), BiasField(), Noise(), MaskJitter(), Flips())

#: The ``[augment]`` table of a training configuration: one field per setting of :data:`AUGMENTATIONS`.
AugmentConfig = make_dataclass(
    "AugmentConfig",
    [
        (s.name, s.kind, field(default=s.default, metadata={"doc": s.doc, "check": s.check}))
        for a in AUGMENTATIONS
        for s in a.settings
    ],
)
AugmentConfig.__doc__ = (
    "Random changes of the training input's T1w contrast and pose, so a model learns more than one scanner's T1w."
)
AugmentConfig.__module__ = __name__


def active(config) -> list[Augmentation]:
    """The augmentations ``config`` (an :data:`AugmentConfig`) switches on."""
    return [a for a in AUGMENTATIONS if a.active(config)]


def settings_of(augmentations) -> str:
    """``augment.gamma, augment.bias``: the setting names of some augmentations, for messages."""
    return ", ".join(f"augment.{s.name}" for a in augmentations for s in a.settings)


def augment_batch(
    inputs: torch.Tensor, target: torch.Tensor, config, t1_channels: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Randomly changed copies of ``inputs`` ``(B, C, H, W)`` and ``target`` ``(B, 1, H, W)``."""
    batch = Batch(inputs.clone(), target.clone(), t1_channels)
    for augmentation in active(config):
        augmentation(batch, config)
    return batch.inputs, batch.target
