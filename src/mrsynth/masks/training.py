"""Training the learned segmenter (:mod:`.segmenter`) on T1w images simulated from label maps.

``python -m mrsynth.masks.training MAPS_DIR --out DIR [--maps 5-20] [--steps N]`` simulates
``--per-map`` subjects from each chosen label map (the simulator of :mod:`mrsynth.simulate` with a
wider range of protocols, poses, bias fields and noise than its defaults: the segmenter must not
learn one site), then trains the U-Net on random axial crops with random gamma, bias, noise, blur
and skull stripping, and (SynthSeg's idea, for the non-brain part only) random intensities for every
tissue outside the brain, so that no face or neck passes for brain by its brightness.  It writes
``segmenter.safetensors`` (float16) and ``segmenter.json``.

The shipped weights were made by this module with the arguments recorded in their ``segmenter.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import __version__, labels
from ..simulate.subject import UNCALIBRATED_TEXTURE, Variation
from . import segmenter

#: Written as ``version`` into ``segmenter.json``.  2: random non-brain intensities; 3: vessel crops 0.1 -> 0.25 and
#: a cross-entropy weight for it (version 2 never gave vessel a probability above 0.06 on the held-out heads), and
#: brain targets made by HCP's mask rule (through the simulator's label-map brain masks).
RECIPE_VERSION = 3

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
class TrainingConfig:
    maps: tuple[int, ...]  # 1-based indices of the label maps (sorted by name) to simulate from
    per_map: int = 3
    steps: int = 3600
    batch: int = 16
    crop: int = 112
    lr: float = 2e-3
    seed: int = 0
    strip_probability: float = 0.3  # skull-stripped inputs (brain mask, randomly grown or shrunk)
    random_head_probability: float = 0.5  # crops whose non-brain tissues get random intensities
    vessel_probability: float = 0.25  # crops centred on a vessel voxel (the rarest class)
    vessel_weight: float = 4.0  # its weight in the cross-entropy (the other classes 1)
    features: tuple[int, ...] = segmenter.FEATURES


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
    """``per_map`` simulated (normalized T1w, class target, head labels) of one label map (a worker process)."""
    from ..simulate.anatomy import label_map_anatomy
    from ..simulate.subject import simulate_subject

    path, seeds = task
    anatomy = label_map_anatomy(Path(path))
    out = []
    for seed in seeds:
        subject = simulate_subject(anatomy, seed=seed, voxel_size=segmenter.WORK_MM, variation=TRAINING_VARIATION)
        brain = brain_above_the_medulla(subject.codes, subject.mask > 0, subject.affine)
        target = segmenter.class_target(subject.codes, brain)
        out.append((segmenter.normalize(subject.t1), target, head_labels(subject.codes, target)))
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


def simulate_training_set(maps_dir: Path, config: TrainingConfig, workers: int = 2):
    from ..simulate.anatomy import label_map_paths

    paths = label_map_paths(maps_dir)
    tasks = [(str(paths[i - 1]), [10_000 + 100 * i + k for k in range(config.per_map)]) for i in config.maps]
    with ProcessPoolExecutor(workers) as pool:
        return [pair for pairs in pool.map(_simulate_map, tasks) for pair in pairs]


VESSEL = segmenter.OUTPUTS.index("vessel")


@dataclass
class CropSampler:
    """Where crops may come from, worked out once: each volume's brain slices and vessel voxels."""

    volumes: list  # (normalized T1w, class target, head labels) per simulated subject
    brain_slices: list = field(init=False)
    vessels: list = field(init=False)
    with_vessels: list = field(init=False)  # indices of the volumes that have any

    def __post_init__(self):
        self.brain_slices = [np.flatnonzero(target.any(axis=(0, 1))) for _, target, _ in self.volumes]
        self.vessels = [np.argwhere(target == VESSEL) for _, target, _ in self.volumes]
        self.with_vessels = [i for i, voxels in enumerate(self.vessels) if len(voxels)]

    def origin(self, rng: np.random.Generator, config: TrainingConfig):
        """Which volume, slice and in-plane corner: a vessel voxel at the centre ``vessel_probability`` of the
        time (where there are any), else 9 in 10 slices through the brain, at random."""
        size = config.crop
        if self.with_vessels and rng.random() < config.vessel_probability:
            index = self.with_vessels[rng.integers(len(self.with_vessels))]
            x, y, z = self.vessels[index][rng.integers(len(self.vessels[index]))]
            shape = self.volumes[index][1].shape
            return index, int(z), [int(np.clip(c - size // 2, 0, max(n - size, 0))) for c, n in zip((x, y), shape)]
        index = int(rng.integers(len(self.volumes)))
        shape = self.volumes[index][1].shape
        slices = self.brain_slices[index]
        z = int(rng.choice(slices)) if len(slices) and rng.random() < 0.9 else int(rng.integers(shape[2]))
        return index, z, [int(rng.integers(0, max(n - size, 0) + 1)) for n in shape[:2]]


def _crop_batch(sampler: CropSampler, rng: np.random.Generator, config: TrainingConfig):
    """Random 2.5D axial crops ``(B, C, crop, crop)`` of the images and head labels, and their targets
    ``(B, crop, crop)``.  Zero padded where a slice is smaller than the crop."""
    size = config.crop
    images = np.zeros((config.batch, 1 + 2 * segmenter.CONTEXT, size, size), np.float32)
    heads = np.zeros(images.shape, np.uint8)
    targets = np.zeros((config.batch, size, size), np.int64)
    for b in range(config.batch):
        index, z, (x0, y0) = sampler.origin(rng, config)
        t1, target, head = sampler.volumes[index]
        stack = segmenter.slice_stack(t1, z)[:, x0 : x0 + size, y0 : y0 + size]
        images[b, :, : stack.shape[1], : stack.shape[2]] = stack
        heads[b, :, : stack.shape[1], : stack.shape[2]] = segmenter.slice_stack(head, z)[
            :, x0 : x0 + size, y0 : y0 + size
        ]
        targets[b, : stack.shape[1], : stack.shape[2]] = target[x0 : x0 + size, y0 : y0 + size, z]
    return torch.from_numpy(images), torch.from_numpy(targets), torch.from_numpy(heads)


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
    config: TrainingConfig,
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


def train(volumes, config: TrainingConfig, log=print) -> torch.nn.Module:
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    sampler = CropSampler(volumes)
    model = segmenter.network(config.features).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=config.steps, pct_start=0.05)
    weights = torch.ones(len(segmenter.OUTPUTS))
    weights[VESSEL] = config.vessel_weight
    model.train()
    started, recent = time.perf_counter(), []
    for step in range(1, config.steps + 1):
        images, targets, heads = _crop_batch(sampler, rng, config)
        images, targets = augment(images, targets, config, generator, heads)
        logits = model(images.contiguous(memory_format=torch.channels_last))
        loss = F.cross_entropy(logits, targets, weight=weights) + dice_loss(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        recent.append(loss.item())
        if step % 100 == 0 or step == config.steps:
            log(f"step {step}/{config.steps}: loss {np.mean(recent):.4f} ({time.perf_counter() - started:.0f} s)")
            recent = []
    return model.eval()


def export(model: torch.nn.Module, config: TrainingConfig, out: Path, seconds: float) -> None:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    state = {
        k: v.detach().to(torch.float16 if v.is_floating_point() else v.dtype).contiguous()
        for k, v in model.state_dict().items()
    }
    save_file(state, str(out / segmenter.WEIGHTS))
    description = {
        "version": RECIPE_VERSION,
        "network": "monai BasicUNet 2D",
        "features": list(config.features),
        "outputs": list(segmenter.OUTPUTS),
        "work_mm": segmenter.WORK_MM,
        "context": segmenter.CONTEXT,
        "training": asdict(config),
        "variation": asdict(TRAINING_VARIATION),
        "training_seconds": round(seconds),
        "mrsynth": __version__,
        "torch": torch.__version__,
    }
    (out / segmenter.DESCRIPTION).write_text(json.dumps(description, indent=1) + "\n")


def _index_range(text: str) -> tuple[int, ...]:
    low, _, high = text.partition("-")
    return tuple(range(int(low), int(high or low) + 1))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("maps_dir", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--maps", default="5-20", help="label maps to train on, 1-based (default 5-20: 1-4 held out)")
    parser.add_argument("--per-map", type=int, default=3)
    parser.add_argument("--steps", type=int, default=TrainingConfig.steps)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    config = TrainingConfig(maps=_index_range(args.maps), per_map=args.per_map, steps=args.steps, seed=args.seed)
    started = time.perf_counter()
    volumes = simulate_training_set(args.maps_dir, config)
    print(f"simulated {len(volumes)} subjects in {time.perf_counter() - started:.0f} s", flush=True)
    model = train(volumes, config, log=lambda m: print(m, flush=True))
    export(model, config, args.out, time.perf_counter() - started)
    print(f"wrote {args.out}", flush=True)


if __name__ == "__main__":
    main()
