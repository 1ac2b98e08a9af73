"""Pretraining the shipped model: a U-Net that maps any T1w to the canonical T2w, trained on the engine's subjects.

``mrsynth pretrain OUT --maps MAPS [--steps N] [--lesion-steps N] [--resume]`` trains on subjects drawn on the fly
from label maps (:mod:`mrsynth.simulate.engine`: any T1w sequence, field, resolution, artefact and pathology;
always HCP's T2w as the target), made by worker processes while the network trains on the last ``pool`` of them,
a new one every ``subject_every`` steps.  Everything is drawn from the seed: the subject at place ``k`` of the
stream, the batch at step ``s``, so a resumed run (``--resume``, from the checkpoint written every
``checkpoint_every`` steps) follows the same path.  It runs on a GPU where there is one (``device`` auto).
``--lesion-steps N`` adds a lesion phase after the main one (:func:`phases`): under the main phase's odds lesions
were too rare for the network to predict them as T2w-bright as they are.

The network: a 2D U-Net (the ``unet`` kind, no normalization layers) reading a slice and its two neighbours
(2.5D) of the T1w on a 1 mm RAS work grid, in brain-median units, predicting the T2w there; the loss is L1
inside the brain mask grown by ``loss_margin_mm`` (outside it the target is not the network's to guess).
``OUT/model`` is a mrsynth model file (float16 weights), with ``MODEL_CARD.md`` and ``pretrain.json``.
"""

from __future__ import annotations

import copy
import io
import json
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from .. import __version__
from ..atomic import write_file, write_text
from ..data import Normalization, slice_offsets
from ..errors import InputError
from ..logs import bar, log
from ..networks import ModelInfo, build_network, save_model
from ..runtime import pick_device, tune_allocator
from ..simulate.anatomy import label_map_paths
from ..simulate.engine import EngineSettings, engine_subject
from ..simulate.pathology import PathologyOdds
from .model_card import CARD, model_card

#: 2: the input channels in the order prediction reads them (:func:`~mrsynth.data.slice_offsets`: the slice, then
#: its neighbours); version 1 read them bottom to top, so the shipped version-1 weights predicted from the wrong
#: slice (about half a voxel off along the slicing axis) until their first convolution's input channels were
#: reordered to match (the model card says so). 3: a lesion phase (``lesion_steps``) after the main one, which is
#: version 2's unchanged.
RECIPE_VERSION = 3
CHECKPOINT, LOG, RECORD, MODEL = "checkpoint.pt", "progress.log", "pretrain.json", "model"
#: Output brain median of the shipped model (the T2w it writes is in these units).
OUTPUT_BRAIN_MEDIAN = 1000.0


@dataclass(frozen=True)
class PretrainConfig:
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

    start: int
    end: int
    seed: int
    pathology: PathologyOdds
    lesion_crops: float = 0.0
    lesion_weight: float = 1.0


def phases(config: PretrainConfig) -> list[Phase]:
    """The main phase (recipe version 2 whole), then the lesion phase where ``lesion_steps`` asks for one: lesions
    in most subjects, crops often centred on them, their pixels weighted more, on subjects the main phase never
    saw (the next seed), so that the network learns lesions as T2w-bright as they are."""
    main = Phase(0, config.steps, config.seed, PathologyOdds())
    if not config.lesion_steps:
        return [main]
    ms, tumour = config.lesion_odds
    end = config.steps + config.lesion_steps
    odds = PathologyOdds(ms=ms, tumour=tumour)
    return [main, Phase(config.steps, end, config.seed + 1, odds, config.lesion_crops, config.lesion_weight)]


def warm_cosine(step: int, steps: int, warm: int = 100) -> float:
    """The lesion phase's learning-rate factor: a linear warm-up over ``warm`` steps, a cosine to 0 at ``steps``."""
    return float(min(1.0, (step + 1) / warm) * 0.5 * (1 + np.cos(np.pi * min(step, steps) / steps)))


class SubjectStream(IterableDataset):
    """The engine's subjects in order, from place ``start`` on, shared among the DataLoader's workers (each makes
    every ``n``-th, the loader hands them back in order)."""

    def __init__(self, paths: list[str], seed: int, start: int, settings: EngineSettings):
        self.paths, self.seed, self.start, self.settings = paths, seed, start, settings

    def __iter__(self):
        worker = get_worker_info()
        offset, step = (worker.id, worker.num_workers) if worker is not None else (0, 1)
        index = self.start + offset
        while True:
            seed = subject_seed(self.seed, index)
            path = self.paths[np.random.default_rng(seed).integers(len(self.paths))]
            subject = engine_subject(path, seed, self.settings)
            margin = ndimage.binary_dilation(subject.brain, iterations=3)
            lesions = _stack_ready(subject.lesions)
            volumes = (subject.t1, subject.t2, margin)
            yield index, *(_stack_ready(v) for v in volumes), lesions, torch.nonzero(lesions)
            index += step


def _stack_ready(volume: np.ndarray) -> torch.Tensor:
    """A volume with its slicing axis (the last, axial on the RAS work grid) first, as a tensor."""
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(volume, 2, 0)))


def _crops(pool: deque, rng: np.random.Generator, config: PretrainConfig, phase: Phase | None = None):
    """A batch of 2.5D crops (input ``(B, 1 + 2 context, crop, crop)``, target and loss weight ``(B, 1, ...)``),
    from random subjects of the pool, slices through the brain, random positions (in the lesion phase, at times
    centred near a lesion pixel); zero padded at the edges."""
    phase = phase or phases(config)[0]
    size, channels = config.crop, 1 + 2 * config.context
    inputs = torch.zeros(config.batch, channels, size, size)
    target = torch.zeros(config.batch, 1, size, size)
    weight = torch.zeros(config.batch, 1, size, size)
    for b in range(config.batch):
        _, t1, t2, margin, lesions, lesion_points = pool[int(rng.integers(len(pool)))]
        z, x0, y0 = _crop_place(t1.shape, margin, lesion_points, rng, phase.lesion_crops, size)
        window = (slice(x0, x0 + size), slice(y0, y0 + size))
        for c, dz in enumerate(slice_offsets(config.context)):  # the channel order prediction reads
            stack = t1[int(np.clip(z + dz, 0, t1.shape[0] - 1))][window]
            inputs[b, c, : stack.shape[0], : stack.shape[1]] = stack
        target[b, 0, : stack.shape[0], : stack.shape[1]] = t2[z][window]
        weight[b, 0, : stack.shape[0], : stack.shape[1]] = margin[z][window].float()
        if phase.lesion_weight != 1:
            weight[b, 0, : stack.shape[0], : stack.shape[1]] *= 1 + (phase.lesion_weight - 1) * (lesions[z][window] > 0)
        if rng.random() < 0.5:  # left-right: the brain is (nearly) symmetric, its T1w/T2w relation is
            inputs[b], target[b], weight[b] = inputs[b].flip(1), target[b].flip(1), weight[b].flip(1)
    return inputs, target, weight


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
    slices = torch.nonzero(margin.flatten(1).any(1)).flatten()
    z = int(slices[rng.integers(len(slices))]) if len(slices) else int(rng.integers(shape[0]))
    x0, y0 = (int(rng.integers(0, max(n - size, 0) + 1)) for n in shape[1:])
    return z, x0, y0


def _network(config: PretrainConfig) -> torch.nn.Module:
    return build_network("unet", 1 + 2 * config.context, {"features": config.features, "norm": "none"})


class Pretraining:
    """The state of one pretraining run: network, optimizer, schedule, step, and its folder."""

    def __init__(self, config: PretrainConfig, out: Path):
        self.config, self.out = config, Path(out)
        self.device = pick_device(config.device)
        torch.manual_seed(config.seed)
        self.model = _network(config).to(self.device).to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.lr, weight_decay=1e-4)
        self.schedule = torch.optim.lr_scheduler.OneCycleLR(
            self.optimizer, config.lr, total_steps=config.steps, pct_start=min(0.5, max(0.05, 3 / config.steps))
        )
        self.step = 0

    @property
    def total_steps(self) -> int:
        return self.config.steps + self.config.lesion_steps

    def begin_lesion_phase(self) -> None:
        """A fresh optimizer for the lesion phase, its rate warmed up then cosine-decayed (:func:`warm_cosine`)."""
        steps = self.config.lesion_steps
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.config.lesion_lr, weight_decay=1e-4)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: warm_cosine(step, steps))

    def save(self) -> None:
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "step": self.step,
            "config": asdict(self.config),
        }
        buffer = io.BytesIO()
        torch.save(state, buffer)
        write_file(self.out / CHECKPOINT, lambda temporary: temporary.write_bytes(buffer.getvalue()))

    def load(self) -> None:
        path = self.out / CHECKPOINT
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except (OSError, RuntimeError, EOFError) as error:
            raise InputError(f"cannot resume from this checkpoint ({error})", path) from None
        if state["config"] != asdict(self.config):
            raise InputError("the checkpoint was written with other settings; resume with the same ones", path)
        self.model.load_state_dict(state["model"])
        if int(state["step"]) > self.config.steps:
            self.begin_lesion_phase()
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.step = int(state["step"])

    def train_step(self, inputs, target, weight) -> float:
        inputs = inputs.to(self.device).contiguous(memory_format=torch.channels_last)
        target, weight = target.to(self.device), weight.to(self.device)
        self.model.train()
        error = F.l1_loss(self.model(inputs), target, reduction="none")
        loss = (error * weight).sum() / weight.sum().clamp(min=1.0)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip)
        self.optimizer.step()
        self.schedule.step()
        self.step += 1
        return loss.item()


def pretrain(
    config: PretrainConfig, out: str | Path, resume: bool = False, progress: bool = True, command: str = ""
) -> Path:
    """Run (or resume) a pretraining into ``out``; returns the exported model folder ``out/model``."""
    out = Path(out)
    paths = [str(p) for p in label_map_paths(config.maps)]
    if max(config.map_indices) > len(paths):
        raise InputError(
            f"{len(paths)} label maps here, the recipe uses maps {min(config.map_indices)}-{max(config.map_indices)}",
            config.maps,
        )
    paths = [paths[i - 1] for i in config.map_indices]
    if not resume and (out / CHECKPOINT).exists():
        raise InputError("holds a pretraining already: --resume it, or choose another folder", out)
    out.mkdir(parents=True, exist_ok=True)
    tune_allocator()
    run = Pretraining(config, out)
    if resume:
        run.load()
    started, last = time.perf_counter(), run.step
    _train(run, paths, progress)
    seconds = time.perf_counter() - started
    folder = export(run, seconds, command, resumed_at=last if resume else None)
    log.info("pretrained model: %s (%.0f s)", folder, seconds)
    return folder


def _train(run: Pretraining, paths: list[str], progress: bool) -> None:
    steps = bar(total=run.total_steps, initial=run.step, allowed=progress, desc="pretrain", unit="step")
    with (run.out / LOG).open("a") as record:
        for phase in phases(run.config):
            if run.step < phase.end:
                if phase.start and run.step == phase.start:
                    run.begin_lesion_phase()
                _train_phase(run, phase, paths, steps, record)
    steps.close()


def _subjects(run: Pretraining, phase: Phase, paths: list[str]):
    """The phase's subjects from the oldest the pool holds at the run's step on, made by worker processes."""
    config = run.config
    newest = (run.step - phase.start) // config.subject_every
    settings = EngineSettings(pathology=phase.pathology)
    stream = SubjectStream(paths, phase.seed, max(0, newest - config.pool + 1), settings)
    return iter(
        DataLoader(
            stream,
            batch_size=None,
            num_workers=config.workers,
            persistent_workers=config.workers > 0,
            prefetch_factor=2 if config.workers else None,
        )
    )


def _train_phase(run: Pretraining, phase: Phase, paths: list[str], steps, record) -> None:
    config = run.config
    subjects, pool, recent = _subjects(run, phase, paths), deque(maxlen=config.pool), []
    while run.step < phase.end:
        step = run.step - phase.start
        while not pool or pool[-1][0] < step // config.subject_every:
            pool.append(next(subjects))
        rng = np.random.default_rng([phase.seed, step])
        recent.append(run.train_step(*_crops(pool, rng, config, phase)))
        steps.update()
        if run.step % 50 == 0 or run.step == run.total_steps:
            line = f"step {run.step}/{run.total_steps}: loss {np.mean(recent):.4f}, subjects {pool[-1][0] + 1}"
            steps.set_postfix(loss=f"{np.mean(recent):.4f}")
            record.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")
            record.flush()
            recent = []
        if run.step % config.checkpoint_every == 0 or run.step == phase.end:
            run.save()


def model_info(config: PretrainConfig, training: dict) -> ModelInfo:
    """The shipped model's description: a T1w-only 2.5D U-Net on a 1 mm RAS work grid, brain only."""
    return ModelInfo(
        kind="unet",
        params={"features": list(config.features), "norm": "none"},
        in_channels=1 + 2 * config.context,
        context=config.context,
        normalization=asdict(Normalization("robust", t2_reference_scale=OUTPUT_BRAIN_MEDIAN)),
        patch_size=config.crop,
        stride=config.crop,
        axis="axial",
        grid_mm=EngineSettings().work_mm,
        brain_only=True,
        masks="any",
        training=training,
    )


def export(run: Pretraining, seconds: float, command: str, resumed_at: int | None = None) -> Path:
    """``OUT/model`` (float16 weights, a model card, ``MODEL_CARD.md``) and ``pretrain.json`` (the recipe)."""
    config = run.config
    half = copy.deepcopy(run.model).cpu().to(torch.float16)
    recipe = {
        "recipe_version": RECIPE_VERSION,
        "config": asdict(config),
        "command": command,
        "seconds_this_session": round(seconds),
        "resumed_at_step": resumed_at,
        **logged_wall_time((run.out / LOG).read_text() if (run.out / LOG).exists() else ""),
        "mrsynth": __version__,
        "torch": torch.__version__,
        "device": str(run.device),
        "parameters": sum(p.numel() for p in run.model.parameters()),
    }
    folder = save_model(run.out / MODEL, half, model_info(config, {"pretraining": recipe}))
    write_text(run.out / RECORD, json.dumps(recipe, indent=1) + "\n")
    write_text(folder / CARD, model_card(recipe, OUTPUT_BRAIN_MEDIAN))
    return folder


def logged_wall_time(log_text: str) -> dict:
    """Wall time of every session of a pretraining, from its progress log: a session starts where the step count
    goes back (a resume repeats the steps after its checkpoint) or after a pause of more than 10 logging intervals
    (a resume from a checkpoint at the last logged step, e.g. into the lesion phase); each lasts from its first line
    to its last plus one logging interval for the steps before its first line. Interruptions are not counted."""
    lines = []
    for line in log_text.splitlines():
        stamp, _, rest = line.partition(" step ")
        if rest:
            lines.append((time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")), int(rest.split("/")[0])))
    gaps = [b[0] - a[0] for a, b in zip(lines, lines[1:]) if b[1] > a[1]]
    pause = 10 * float(np.median(gaps)) if gaps else float("inf")
    sessions: list[list[tuple[float, int]]] = []
    for when, step in lines:
        if not sessions or step <= sessions[-1][-1][1] or when - sessions[-1][-1][0] > pause:
            sessions.append([])
        sessions[-1].append((when, step))
    total = 0.0
    for session in sessions:
        span = session[-1][0] - session[0][0]
        total += span + (span / (len(session) - 1) if len(session) > 1 else 0.0)
    return {"sessions": len(sessions), "logged_wall_seconds": round(total)}
