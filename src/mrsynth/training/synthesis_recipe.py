"""The synthesis recipe: the shipped pretrained model, a U-Net that maps any T1w to the canonical T2w, trained on
the engine's subjects (``mrsynth pretrain --recipe synthesis OUT --maps MAPS [--steps N] [--lesion-steps N]``).

Subjects are drawn on the fly from label maps (:mod:`mrsynth.simulate.engine`: any T1w sequence, field,
resolution, artefact and pathology; always HCP's T2w as the target), made by worker processes while the network
trains on the last ``pool`` of them, a new one every ``subject_every`` steps.  Everything is drawn from the seed:
the subject at place ``k`` of the stream, the batch at step ``s``.  Both contrasts are normalized as the model's
input contract says (:class:`~mrsynth.networks.InputSpec`: by their brain medians, the T1w's over the mask a user
would give, jittered), and crops are built by :func:`~mrsynth.networks.stack_slices`, as prediction builds its
input.  ``--lesion-steps N`` adds a lesion phase after the main one (:func:`phases`): under the main phase's odds
lesions were too rare for the network to predict them as T2w-bright as they are.

The network: a 2D U-Net (the ``unet`` kind, no normalization layers) reading a slice and its two neighbours
(2.5D) of the T1w on a 1 mm RAS work grid, predicting the T2w there; the loss is L1 inside the brain mask grown by
``loss_margin_mm`` (outside it the target is not the network's to guess).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ..errors import InputError
from ..networks import InputSpec, ModelInfo, Normalization, build_network, gather_windows, slice_offsets, stack_slices
from ..simulate.anatomy import check_label_maps, label_map_paths
from ..simulate.engine import EngineSettings, engine_subject
from ..simulate.pathology import PathologyOdds
from .model_card import model_card

#: 2: the input channels in the order prediction reads them (:func:`~mrsynth.networks.slice_offsets`: the slice,
#: then its neighbours); version 1 read them bottom to top, so the shipped version-1 weights predicted from the wrong
#: slice (about half a voxel off along the slicing axis) until their first convolution's input channels were
#: reordered to match (the model card says so). 3: a lesion phase (``lesion_steps``) after the main one, which is
#: version 2's unchanged.  Version 3 run by the one training loop and input builder reads slices beyond the volume
#: as background, as prediction does (they were the edge slice repeated), and divides by the brain median through
#: the input contract's normalization: the same recipe, its batches equal but at the volume's edges and to float
#: rounding.
RECIPE_VERSION = 3
#: Output brain median of the shipped model (the T2w it writes is in these units).
OUTPUT_BRAIN_MEDIAN = 1000.0


@dataclass(frozen=True)
class SynthesisConfig:
    maps: str  # folder of label maps
    map_indices: tuple[int, ...] = tuple(range(5, 21))  # 1-based, sorted by name: maps 1-4 are held out for tests
    steps: int = 6000
    batch: int = 8
    crop: int = 128
    lr: float = 1e-3
    features: tuple[int, ...] = (16, 32, 64, 128, 256, 32)
    context: int = 1  # neighbouring slices on each side
    pool: int = 12  # subjects held for sampling
    subject_every: int = 25  # steps between new subjects
    workers: int = 1  # processes making subjects
    loss_margin_mm: float = 3.0
    clip: float = 1.0
    seed: int = 0
    checkpoint_every: int = 250
    device: str = "auto"
    lesion_steps: int = 0  # a lesion phase after ``steps``: fresh subjects, most with lesions, crops near them
    lesion_lr: float = 2e-4  # its learning rate: 100 steps of warm-up, then a cosine down to 0
    lesion_odds: tuple[float, float] = (0.5, 0.4)  # its chance of MS-like lesions, of a tumour-like mass
    lesion_crops: float = 0.5  # its chance that a crop is centred (within a quarter crop) on a lesion pixel
    lesion_weight: float = 2.0  # its loss weight of lesion pixels (1 elsewhere)


def subject_seed(seed: int, index: int) -> int:
    return seed * 1_000_003 + index


@dataclass(frozen=True)
class Phase:
    """A stretch of a pretraining, steps ``start`` to ``end``: the seed of its subjects and batches (counted from
    its start), its subjects' pathology, and how its crops seek lesions."""

    name: str
    start: int
    end: int
    seed: int
    pathology: PathologyOdds
    lesion_crops: float = 0.0
    lesion_weight: float = 1.0


def phases(config: SynthesisConfig) -> list[Phase]:
    """The main phase (recipe version 2 whole), then the lesion phase where ``lesion_steps`` asks for one: lesions
    in most subjects, crops often centred on them, their pixels weighted more, on subjects the main phase never
    saw (the next seed), so that the network learns lesions as T2w-bright as they are."""
    main = Phase("main", 0, config.steps, config.seed, PathologyOdds())
    if not config.lesion_steps:
        return [main]
    ms, tumour = config.lesion_odds
    end = config.steps + config.lesion_steps
    odds = PathologyOdds(ms=ms, tumour=tumour)
    lesion = Phase("lesion", config.steps, end, config.seed + 1, odds, config.lesion_crops, config.lesion_weight)
    return [main, lesion]


def warm_cosine(step: int, steps: int, warm: int = 100) -> float:
    """The lesion phase's learning-rate factor: a linear warm-up over ``warm`` steps, a cosine to 0 at ``steps``."""
    return float(min(1.0, (step + 1) / warm) * 0.5 * (1 + np.cos(np.pi * min(step, steps) / steps)))


def input_spec(config: SynthesisConfig) -> InputSpec:
    """The pretrained model's input contract: a T1w-only 2.5D input on a 1 mm RAS work grid, by its brain median
    (over the brain mask on the grid it is given on), the output the brain only, each voxel of the input's grid the
    average of the prediction over its footprint."""
    return InputSpec(
        offsets=slice_offsets(config.context),
        grid_mm=EngineSettings().work_mm,
        normalization=Normalization("robust", t2_reference_scale=OUTPUT_BRAIN_MEDIAN),
        brain_only=True,
        footprint=True,
    )


class SubjectStream(IterableDataset):
    """The engine's subjects in order, from place ``start`` on, shared among the DataLoader's workers (each makes
    every ``n``-th, the loader hands them back in order), normalized as the input contract says."""

    def __init__(self, paths: list[str], seed: int, start: int, settings: EngineSettings, spec: InputSpec):
        self.paths, self.seed, self.start, self.settings, self.spec = paths, seed, start, settings, spec

    def __iter__(self):
        worker = get_worker_info()
        offset, step = (worker.id, worker.num_workers) if worker is not None else (0, 1)
        index = self.start + offset
        while True:
            seed = subject_seed(self.seed, index)
            path = self.paths[np.random.default_rng(seed).integers(len(self.paths))]
            yield (index, *self.volumes(engine_subject(path, seed, self.settings)))
            index += step

    def volumes(self, subject) -> tuple:
        """Slice-major normalized T1w and T2w, the loss margin, the lesion labels and where the lesions are."""
        norm = self.spec.normalization
        t1 = norm.transform_volume("t1", subject.t1, subject.normalizing)(subject.t1)
        t2 = norm.transform_volume("t2", subject.t2, subject.brain)(subject.t2)
        margin = ndimage.binary_dilation(subject.brain, iterations=3)
        front = lambda volume: np.ascontiguousarray(np.moveaxis(volume, 2, 0))  # noqa: E731  axial first
        lesions = front(subject.lesions)
        return front(t1), front(t2), front(margin), lesions, np.argwhere(lesions)


class SynthesisRecipe:
    """The recipe of the pretrained synthesis model (:func:`~.pretrain.pretrain` runs it)."""

    name, version = "synthesis", RECIPE_VERSION

    def __init__(self, config: SynthesisConfig):
        self.config, self.spec, self.clip = config, input_spec(config), config.clip
        self.newest = 0

    def check(self) -> None:
        """The label maps: enough of them for the recipe, each readable (all before the first step)."""
        paths = label_map_paths(self.config.maps)
        indices = self.config.map_indices
        if max(indices) > len(paths):
            raise InputError(
                f"{len(paths)} label maps here, the recipe uses maps {min(indices)}-{max(indices)}", self.config.maps
            )
        check_label_maps([paths[i - 1] for i in indices])

    def network(self) -> torch.nn.Module:
        return build_network("unet", self.spec.in_channels, {"features": self.config.features, "norm": "none"})

    def phases(self) -> list[Phase]:
        return phases(self.config)

    def optimizer(self, phase: Phase, model: torch.nn.Module):
        """AdamW with a one-cycle rate for the main phase; a fresh one, warmed up then cosine-decayed, for the
        lesion phase."""
        config = self.config
        if phase.start == 0:
            optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=1e-4)
            if config.steps < 4:  # too short for a cycle (a test's run): the rate held
                return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
            pct = min(0.5, max(0.05, 3 / config.steps))
            return optimizer, torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, config.steps, pct_start=pct)
        steps = phase.end - phase.start
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lesion_lr, weight_decay=1e-4)
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warm_cosine(step, steps))

    def batches(self, phase: Phase, step: int):
        """The batches of steps ``step`` to ``phase.end``: crops from the pool of the phase's subjects."""
        config = self.config
        subjects, pool = self._subjects(phase, step), deque(maxlen=config.pool)
        while step < phase.end:
            local = step - phase.start
            while not pool or pool[-1][0] < local // config.subject_every:
                pool.append(tuple(v.numpy() if isinstance(v, torch.Tensor) else v for v in next(subjects)))
            self.newest = pool[-1][0]
            yield crops(pool, np.random.default_rng([phase.seed, local]), config, self.spec, phase)
            step += 1

    def _subjects(self, phase: Phase, step: int):
        """The phase's subjects from the oldest the pool holds at ``step`` on, made by worker processes."""
        config = self.config
        paths = [str(p) for p in label_map_paths(config.maps)]
        paths = [paths[i - 1] for i in config.map_indices]
        newest = (step - phase.start) // config.subject_every
        settings = EngineSettings(pathology=phase.pathology)
        stream = SubjectStream(paths, phase.seed, max(0, newest - config.pool + 1), settings, self.spec)
        loader = DataLoader(
            stream,
            batch_size=None,
            num_workers=config.workers,
            persistent_workers=config.workers > 0,
            prefetch_factor=2 if config.workers else None,
        )
        return iter(loader)

    def loss(self, output: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """L1 inside the loss margin (lesions weighted as the phase says)."""
        error = F.l1_loss(output, target.to(output.device), reduction="none")
        weight = weight.to(output.device)
        return (error * weight).sum() / weight.sum().clamp(min=1.0)

    def status(self) -> str:
        return f", subjects {self.newest + 1}"

    def hint(self) -> str:
        """What the log says of the plan beside its steps: a run without the shipped recipe's lesion phase."""
        return "" if self.config.lesion_steps else "no lesion phase (the shipped recipe adds --lesion-steps 2000)"

    def describe(self, training: dict) -> ModelInfo:
        """The model's description: a T1w-only 2.5D U-Net on a 1 mm RAS work grid, brain only."""
        config = self.config
        return ModelInfo(
            kind="unet",
            spec=self.spec,
            params={"features": list(config.features), "norm": "none"},
            masks="any",
            patch_size=config.crop,
            stride=config.crop,
            training=training,
        )

    def card(self, record: dict) -> str:
        return model_card(record, OUTPUT_BRAIN_MEDIAN, footprint=self.spec.footprint)


def crops(pool: deque, rng: np.random.Generator, config: SynthesisConfig, spec: InputSpec, phase: Phase):
    """A batch of 2.5D crops (input ``(B, in_channels, crop, crop)``, target and loss weight ``(B, 1, ...)``), from
    random subjects of the pool, slices through the brain, random positions (in the lesion phase, at times centred
    near a lesion pixel); zero padded at the edges; flipped left-right at random (:func:`crop_places`)."""
    return crops_at(pool, crop_places(pool, rng, config, phase), config, spec, phase)


def crop_places(pool: deque, rng: np.random.Generator, config: SynthesisConfig, phase: Phase) -> list[tuple]:
    """Where each crop of a batch comes from: ``(subject in the pool, slice, row, column, flipped)``."""
    places = []
    for _ in range(config.batch):
        index = int(rng.integers(len(pool)))
        _, t1, _, margin, _, lesion_points = pool[index]
        z, x0, y0 = _crop_place(t1.shape, margin, lesion_points, rng, phase.lesion_crops, config.crop)
        places.append((index, z, x0, y0, bool(rng.random() < 0.5)))
    return places


def crops_at(pool: deque, places: list[tuple], config: SynthesisConfig, spec: InputSpec, phase: Phase):
    """The batch of the crops at ``places`` (:func:`crop_places`): their input as prediction builds it, target and
    loss weight; a flipped crop mirrored left-right (the brain is nearly symmetric, its T1w/T2w relation is)."""
    size = (config.crop, config.crop)
    inputs = np.zeros((len(places), spec.in_channels) + size, np.float32)
    target = np.zeros((len(places), 1) + size, np.float32)
    weight = np.zeros((len(places), 1) + size, np.float32)
    for b, (index, z, x0, y0, flipped) in enumerate(places):
        _, t1, t2, margin, lesions, _ = pool[index]
        place = ([z], [x0], [y0], size)
        inputs[b] = stack_slices(spec, t1, *place)[0]
        target[b, 0] = gather_windows(t2, *place)[0]
        weight[b, 0] = gather_windows(margin, *place)[0]
        if phase.lesion_weight != 1:
            weight[b, 0] *= 1 + (phase.lesion_weight - 1) * (gather_windows(lesions, *place)[0] > 0)
        if flipped:
            for array in (inputs, target, weight):
                array[b] = array[b, :, ::-1].copy()
    return torch.from_numpy(inputs), torch.from_numpy(target), torch.from_numpy(weight)


def _crop_place(shape, margin, lesion_points, rng: np.random.Generator, lesion_crops: float, size: int):
    """Slice and corner of a crop: near a random lesion pixel (of ``lesion_points``, found once per subject by the
    stream) with chance ``lesion_crops`` where there are lesions, else a random slice through the brain and a random
    corner."""
    if lesion_crops and len(lesion_points) and rng.random() < lesion_crops:
        z, x, y = (int(v) for v in lesion_points[rng.integers(len(lesion_points))])
        x0, y0 = (
            int(np.clip(c - size // 2 + rng.integers(-(size // 4), size // 4 + 1), 0, max(n - size, 0)))
            for c, n in zip((x, y), shape[1:])
        )
        return z, x0, y0
    slices = np.flatnonzero(margin.reshape(len(margin), -1).any(1))
    z = int(slices[rng.integers(len(slices))]) if len(slices) else int(rng.integers(shape[0]))
    x0, y0 = (int(rng.integers(0, max(n - size, 0) + 1)) for n in shape[1:])
    return z, x0, y0
