"""The segmenter recipe: the learned segmenter (:mod:`mrsynth.masks.segmenter`) trained on T1w images simulated
from label maps (``mrsynth pretrain --recipe segmenter OUT --maps MAPS [--steps N]``).

It simulates ``per_map`` subjects from each chosen label map (the simulator of :mod:`mrsynth.simulate` with a wider
range of protocols, poses, bias fields and noise than its defaults: the segmenter must not learn one site) on the
segmenter's 1.4 mm work grid, normalized as its input contract says, then trains the U-Net on random axial crops
built by :func:`~mrsynth.networks.stack_slices` (as prediction builds its input) with random gamma, bias, noise,
blur and skull stripping, and (SynthSeg's idea, for the non-brain part only) random intensities for every tissue
outside the brain, so that no face or neck passes for brain by its brightness.  The crops and augmentations of step
``s`` are drawn from ``(seed, s)``, so that a resumed run follows the path of an uninterrupted one.
"""

from __future__ import annotations

import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import labels
from ..errors import InputError
from ..masks import segmenter
from ..networks import ModelInfo, build, gather_windows, stack_slices
from ..networks.modelfile import SEGMENTER, segmenter_spec
from ..simulate.anatomy import check_label_maps, label_map_anatomy, label_map_paths
from ..simulate.subject import UNCALIBRATED_TEXTURE, Variation, simulate_subject
from .model_card import segmenter_card

#: 2: random non-brain intensities; 3: vessel crops 0.1 -> 0.25 and a cross-entropy weight for it (version 2 never
#: gave vessel a probability above 0.06 on the held-out heads), and brain targets made by HCP's mask rule (through
#: the simulator's label-map brain masks).  4: run by the one training loop: crops and augmentations drawn per step
#: (resumable), the input built by the one input builder in the channel order every model reads (the slice, then
#: below and above; version 3's shipped weights had their first convolution reordered to it) and normalized through
#: the input contract.
RECIPE_VERSION = 4
FEATURES = (16, 24, 48, 96, 192, 16)

#: Wider than the simulator's defaults (which stay near HCP's protocol), so that contrast and pose vary a lot.
TRAINING_VARIATION = replace(
    Variation(),
    rotation_deg=8.0,
    shift_mm=8.0,
    scale_sd=0.06,
    relaxation_sd=0.06,
    bias_strength=0.25,
    snr_range=(12.0, 60.0),
    ti_range_ms=(750.0, 1100.0),
    flip_range_deg=(6.0, 12.0),
    texture_sd=0.06,
    **UNCALIBRATED_TEXTURE,  # the texture as it was when the shipped weights were trained
)


@dataclass(frozen=True)
class SegmenterConfig:
    maps: str  # folder of label maps
    map_indices: tuple[int, ...] = tuple(range(5, 21))  # 1-based, sorted by name: maps 1-4 are held out
    per_map: int = 3
    steps: int = 3600
    batch: int = 16
    crop: int = 112
    lr: float = 2e-3
    seed: int = 0
    workers: int = 2  # processes simulating the training set
    checkpoint_every: int = 250
    device: str = "auto"
    strip_probability: float = 0.3  # skull-stripped inputs (brain mask, randomly grown or shrunk)
    random_head_probability: float = 0.5  # crops whose non-brain tissues get random intensities
    vessel_probability: float = 0.25  # crops centred on a vessel voxel (the rarest class)
    vessel_weight: float = 4.0  # its weight in the cross-entropy (the other classes 1)
    features: tuple[int, ...] = FEATURES


AIR = 1  # the head label of air (code 0 outside the brain)


def head_labels(codes: np.ndarray, target: np.ndarray) -> np.ndarray:
    """What the random-intensity augmentation paints: 0 inside the brain target, ``AIR`` for air, and one value
    per other label code outside the brain (2 + the code's rank)."""
    outside = target == 0
    tissue = outside & (codes != 0)
    _, rank = np.unique(codes[tissue], return_inverse=True)
    out = np.where(outside, AIR, 0).astype(np.uint8)
    out[tissue] = np.minimum(rank + 2, 255)
    return out


def _simulate_map(task) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``per_map`` simulated subjects of one label map (a worker process): slice-major (axial first) T1w normalized
    as the input contract says, class target and head labels."""
    path, seeds = task
    anatomy = label_map_anatomy(Path(path))
    normalization = segmenter_spec(segmenter.WORK_MM).normalization
    out = []
    for seed in seeds:
        subject = simulate_subject(anatomy, seed=seed, voxel_size=segmenter.WORK_MM, variation=TRAINING_VARIATION)
        brain = brain_above_the_medulla(subject.codes, subject.mask > 0, subject.affine)
        target = segmenter.class_target(subject.codes, brain)
        t1 = normalization.transform_volume("t1", subject.t1)(subject.t1)
        front = lambda volume: np.ascontiguousarray(np.moveaxis(volume, 2, 0))  # noqa: E731
        out.append((front(t1), front(target), front(head_labels(subject.codes, target))))
    return out


#: How far the HCP and ICBM templates' brain masks reach below the cerebellum's lowest point (both: 7 mm).
BELOW_CEREBELLUM_MM = 7.0


def brain_above_the_medulla(codes: np.ndarray, brain: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """The label map's brain mask cut ``BELOW_CEREBELLUM_MM`` below the cerebellum's lowest slice.

    SynthSeg's label maps run the brain mask down the spinal canal to the edge of the field of view;
    the HCP and ICBM templates' masks (what users compare with) stop in the medulla.  Trained on the
    maps' masks, the segmenter called the ICBM head's neck brain."""
    bits, _ = labels.tissue_bits(codes, brain)
    slices = np.flatnonzero(labels.has_class(bits, "cerebellum").any(axis=(0, 1)))
    if not slices.size:
        return brain
    lowest = int(slices.min() - round(BELOW_CEREBELLUM_MM / abs(affine[2, 2])))
    out = brain.copy()
    out[:, :, : max(lowest, 0)] = False
    return out


def simulate_training_set(config: SegmenterConfig) -> list:
    """The recipe's subjects, ``per_map`` of each chosen label map (seeded by the map's index), in worker
    processes."""
    paths = label_map_paths(config.maps)
    tasks = [(str(paths[i - 1]), [10_000 + 100 * i + k for k in range(config.per_map)]) for i in config.map_indices]
    if config.workers < 1:
        return [pair for task in tasks for pair in _simulate_map(task)]
    with ProcessPoolExecutor(config.workers) as pool:
        return [pair for pairs in pool.map(_simulate_map, tasks) for pair in pairs]


VESSEL = segmenter.OUTPUTS.index("vessel")


@dataclass
class CropSampler:
    """Where crops may come from, worked out once: each volume's brain slices and vessel voxels (volumes
    slice-major)."""

    volumes: list  # (normalized T1w, class target, head labels) per simulated subject
    brain_slices: list = field(init=False)
    vessels: list = field(init=False)
    with_vessels: list = field(init=False)  # indices of the volumes that have any

    def __post_init__(self):
        self.brain_slices = [np.flatnonzero(target.any(axis=(1, 2))) for _, target, _ in self.volumes]
        self.vessels = [np.argwhere(target == VESSEL) for _, target, _ in self.volumes]
        self.with_vessels = [i for i, voxels in enumerate(self.vessels) if len(voxels)]

    def origin(self, rng: np.random.Generator, config: SegmenterConfig):
        """Which volume, slice and in-plane corner: a vessel voxel at the centre ``vessel_probability`` of the
        time (where there are any), else 9 in 10 slices through the brain, at random."""
        size = config.crop
        if self.with_vessels and rng.random() < config.vessel_probability:
            index = self.with_vessels[rng.integers(len(self.with_vessels))]
            z, x, y = self.vessels[index][rng.integers(len(self.vessels[index]))]
            shape = self.volumes[index][1].shape[1:]
            return index, int(z), [int(np.clip(c - size // 2, 0, max(n - size, 0))) for c, n in zip((x, y), shape)]
        index = int(rng.integers(len(self.volumes)))
        shape = self.volumes[index][1].shape
        slices = self.brain_slices[index]
        z = int(rng.choice(slices)) if len(slices) and rng.random() < 0.9 else int(rng.integers(shape[0]))
        return index, z, [int(rng.integers(0, max(n - size, 0) + 1)) for n in shape[1:]]


def crop_batch(sampler: CropSampler, rng: np.random.Generator, config: SegmenterConfig, spec):
    """Random 2.5D axial crops ``(B, C, crop, crop)`` of the images and head labels (both stacked as the input
    contract says), and their targets ``(B, crop, crop)``.  Zero padded where a slice is smaller than the crop."""
    return crops_at(sampler, [sampler.origin(rng, config) for _ in range(config.batch)], config, spec)


def crops_at(sampler: CropSampler, origins: list, config: SegmenterConfig, spec):
    """The crops at ``origins`` (:meth:`CropSampler.origin`: volume, slice, corner): images and head labels built by
    the one input builder, and targets."""
    size = (config.crop, config.crop)
    images = np.zeros((len(origins), spec.in_channels) + size, np.float32)
    heads = np.zeros(images.shape, np.float32)
    targets = np.zeros((len(origins),) + size, np.int64)
    for b, (index, z, (x0, y0)) in enumerate(origins):
        t1, target, head = sampler.volumes[index]
        place = ([z], [x0], [y0], size)
        images[b] = stack_slices(spec, t1, *place)[0]
        heads[b] = stack_slices(spec, head, *place)[0]
        targets[b] = gather_windows(target, *place)[0]
    return torch.from_numpy(images), torch.from_numpy(targets), torch.from_numpy(heads).to(torch.uint8)


def _gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, int(math.ceil(2.5 * sigma)))
    offsets = torch.arange(-radius, radius + 1, dtype=images.dtype)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = (kernel / kernel.sum()).repeat(images.shape[1], 1, 1, 1)
    rows = F.conv2d(images, kernel.reshape(images.shape[1], 1, -1, 1), padding=(radius, 0), groups=images.shape[1])
    return F.conv2d(rows, kernel.reshape(images.shape[1], 1, 1, -1), padding=(0, radius), groups=images.shape[1])


def _random_head(image: torch.Tensor, head: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``image`` with every non-brain tissue (``head`` > 0) painted a random intensity (0 to 1.5 of the
    brain's 99th percentile; air at most 0.25: dark in any MR image), a random smooth texture and a slight
    blur; the brain left as simulated."""
    uniform = lambda *shape: torch.rand(*shape, generator=generator)  # noqa: E731
    table = 1.5 * uniform(max(int(head.max()), AIR) + 1)
    table[AIR] = table[AIR] / 6
    painted = table[head.long()]
    texture = F.interpolate(
        torch.randn(1, 1, 8, 8, generator=generator), size=image.shape[1:], mode="bicubic", align_corners=True
    )[0]
    painted = painted * torch.exp(0.2 * uniform(1) * texture)
    painted = _gaussian_blur(painted[None], 0.4 + 0.8 * uniform(1).item())[0]
    return torch.where(head > 0, painted, image)


def augment(
    images: torch.Tensor,
    targets: torch.Tensor,
    config: SegmenterConfig,
    generator: torch.Generator,
    heads: torch.Tensor | None = None,
):
    """Random non-brain intensities (where ``heads`` are given), skull stripping, blur, gamma, bias field, noise
    and flips, per crop."""
    batch = len(images)
    uniform = lambda *shape: torch.rand(*shape, generator=generator)  # noqa: E731
    for b in range(batch):
        if heads is not None and uniform(1).item() < config.random_head_probability:
            images[b] = _random_head(images[b], heads[b], generator)
        if uniform(1).item() < config.strip_probability:  # skull-stripped: brain grown or shrunk by up to 2 px
            brain = (targets[b] > 0).float()[None, None]
            width = int(torch.randint(-2, 3, (1,), generator=generator))
            if width > 0:
                brain = F.max_pool2d(brain, 2 * width + 1, stride=1, padding=width)
            elif width < 0:
                brain = -F.max_pool2d(-brain, -2 * width + 1, stride=1, padding=-width)
            images[b] *= brain[0]
        if uniform(1).item() < 0.5:
            images[b : b + 1] = _gaussian_blur(images[b : b + 1], 0.3 + 1.2 * uniform(1).item())
    gamma = torch.exp((uniform(batch, 1, 1, 1) * 2 - 1) * math.log(1.8))
    images = images.clamp(min=0) ** gamma
    grid = torch.randn(batch, 1, 4, 4, generator=generator)
    bias = F.interpolate(grid, size=images.shape[2:], mode="bicubic", align_corners=True)
    images = images * torch.exp(0.25 * uniform(batch, 1, 1, 1) * bias)
    images = images * (0.8 + 0.4 * uniform(batch, 1, 1, 1))
    noise = 0.06 * uniform(batch, 1, 1, 1) * torch.randn(images.shape, generator=generator)
    images = (images + noise).clamp(min=0)
    for dim in (2, 3):
        flip = uniform(batch) < 0.5
        images[flip], targets[flip] = images[flip].flip(dim), targets[flip].flip(dim - 1)
    return images, targets


def dice_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1 - mean soft Dice over the classes present in the batch."""
    probs = torch.softmax(logits, dim=1)
    onehot = F.one_hot(targets, logits.shape[1]).permute(0, 3, 1, 2).to(probs)
    overlap = (probs * onehot).sum(dim=(0, 2, 3))
    size = probs.sum(dim=(0, 2, 3)) + onehot.sum(dim=(0, 2, 3))
    present = onehot.sum(dim=(0, 2, 3)) > 0
    return 1 - (2 * overlap[present] / size[present].clamp(min=1e-6)).mean()


class SegmenterRecipe:
    """The recipe of the learned segmenter (:func:`~.pretrain.pretrain` runs it)."""

    name, version, clip = SEGMENTER, RECIPE_VERSION, 0.0

    def __init__(self, config: SegmenterConfig):
        self.config, self.spec = config, segmenter_spec(segmenter.WORK_MM)
        self._sampler: CropSampler | None = None

    def check(self) -> None:
        paths = label_map_paths(self.config.maps)
        indices = self.config.map_indices
        if max(indices) > len(paths):
            raise InputError(
                f"{len(paths)} label maps here, the recipe uses maps {min(indices)}-{max(indices)}", self.config.maps
            )
        check_label_maps([paths[i - 1] for i in indices])

    def network(self) -> torch.nn.Module:
        params = {"features": self.config.features, "norm": "batch"}
        return build("unet", self.spec.in_channels, params, out_channels=len(segmenter.OUTPUTS))

    def phases(self) -> list:
        return [_Phase("main", 0, self.config.steps)]

    def optimizer(self, phase, model: torch.nn.Module):
        config = self.config
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=1e-4)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=config.steps, pct_start=0.05)
        return optimizer, schedule

    def batches(self, phase, step: int):
        """The batches of steps ``step`` on: crops of the simulated subjects, augmented, drawn from ``(seed, step)``."""
        if self._sampler is None:
            self._sampler = CropSampler(simulate_training_set(self.config))
        while step < phase.end:
            rng = np.random.default_rng([self.config.seed, step])
            generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
            images, targets, heads = crop_batch(self._sampler, rng, self.config, self.spec)
            yield augment(images, targets, self.config, generator, heads)
            step += 1

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        weights = torch.ones(len(segmenter.OUTPUTS), device=logits.device)
        weights[VESSEL] = self.config.vessel_weight
        targets = targets.to(logits.device)
        return F.cross_entropy(logits, targets, weight=weights) + dice_loss(logits, targets)

    def status(self) -> str:
        return ""

    def hint(self) -> str:
        return ""

    def describe(self, training: dict) -> ModelInfo:
        training["pretraining"]["variation"] = asdict(TRAINING_VARIATION)
        return ModelInfo(
            kind="unet",
            spec=self.spec,
            params={"features": list(self.config.features), "norm": "batch"},
            outputs=segmenter.OUTPUTS,
            masks="any",
            patch_size=self.config.crop,
            stride=self.config.crop,
            training=training,
        )

    def card(self, record: dict) -> str:
        return segmenter_card(record)


@dataclass(frozen=True)
class _Phase:
    name: str
    start: int
    end: int
