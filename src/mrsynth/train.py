"""Training: config -> run folder with split, normalization, history, curves, checkpoints and the model.

Run folder::

    config.toml          the configuration as run (reload with --config)
    split.json           which subjects / patches train, validate and test
    normalization.json   fitted on the training subjects only
    history.csv          per epoch: train loss, validation loss, learning rate, seconds, patches/s
    steps.csv            per optimizer step: loss
    learning_curve.png
    checkpoint.pt        after every epoch (temporary file + rename); --resume continues from it
    summary.json         final losses (validation and test, eval mode), timings
    model/               the exported model (mrsynth.models.save_model)

Determinism: the initial weights come from ``seed``, and epoch ``e`` visits the training
patches in an order drawn from ``(seed, e)`` alone, so a resumed run follows exactly the
path of an uninterrupted one (on the CPU).
"""

from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from .cache import PreparedSubject, list_prepared
from .config import TrainConfig, load_config, to_toml
from .errors import InputError
from .models import FCN, ModelInfo, pick_device, recalibrate_batchnorm, save_model
from .normalization import Normalization
from .patches import PatchDataset, PatchGrid, Split, across_subject_split, batch_loader, within_subject_split
from .runtime import tune_allocator

CHECKPOINT = "checkpoint.pt"


@dataclass
class RunData:
    split: Split
    normalization: Normalization
    grid: PatchGrid
    train: PatchDataset
    val: PatchDataset | None
    test: PatchDataset | None


def _pick(subjects: dict[str, PreparedSubject], ids: list[str], cache) -> list[PreparedSubject]:
    missing = [i for i in ids if i not in subjects]
    if missing:
        raise InputError(f"subject(s) not in the prepared cache: {', '.join(missing)}", cache)
    return [subjects[i] for i in ids]


def make_split(config: TrainConfig, subjects: dict[str, PreparedSubject], grid: PatchGrid) -> Split:
    data = config.data
    if data.split == "within":
        subject_id = data.subject or next(iter(subjects))
        subject = _pick(subjects, [subject_id], data.cache)[0]
        return within_subject_split(subject_id, grid.count(subject.stored_shape), config.seed,
                                    tuple(data.fractions))
    if data.split != "across":
        raise InputError(f"data.split must be 'within' or 'across', got {data.split!r}")
    train = data.train or [i for i in subjects if i not in data.val and i not in data.test]
    try:
        return across_subject_split(train, data.test, data.val)
    except ValueError as error:
        raise InputError(str(error)) from error


def build_data(config: TrainConfig, split: Split | None = None) -> RunData:
    """Datasets of a run: the split, and normalization fitted on the training subjects."""
    data = config.data
    subjects = {s.id: s for s in list_prepared(data.cache)}
    grid = PatchGrid(data.patch_size, data.stride)
    split = split or make_split(config, subjects, grid)
    train_subjects = _pick(subjects, split.train, data.cache)
    norm = Normalization.fit(data.norm, [s.stats for s in train_subjects])

    if data.sampling not in ("patches", "tiles"):
        raise InputError(f"data.sampling must be 'patches' or 'tiles', got {data.sampling!r}")
    if data.sampling == "tiles" and split.kind == "within":
        raise InputError("tile sampling needs an across-subject split: tiles would cover the test patches")

    def dataset(part: str) -> PatchDataset | None:
        ids = getattr(split, part)
        if not ids:
            return None
        indices = split.part_indices(part)
        if indices is not None and not len(indices):
            return None
        part_grid = PatchGrid.tiles(data.tile_size) if part == "train" and data.sampling == "tiles" else grid
        return PatchDataset(_pick(subjects, ids, data.cache), norm, part_grid, data.channels, indices)

    return RunData(split, norm, grid, dataset("train"), dataset("val"), dataset("test"))


def epoch_order(n: int, seed: int, epoch: int, limit: int = 0) -> list[int]:
    """The training patches of one epoch, in order: a permutation drawn from (seed, epoch)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(n, generator=generator)
    return (order[:limit] if limit else order).tolist()


def _inputs_only(loader):
    for inputs, _ in loader:
        yield inputs


def _evaluation_order(n: int, limit: int, seed: int) -> list[int]:
    if limit and limit < n:
        return sorted(np.random.default_rng(seed).choice(n, limit, replace=False).tolist())
    return list(range(n))


@torch.no_grad()
def mean_loss(model: torch.nn.Module, dataset: PatchDataset, batch_size: int, device, limit: int = 0,
              seed: int = 0) -> float:
    """Mean per-pixel MSE of the model (eval mode) over a dataset (or a seeded subset)."""
    return patch_losses(model, dataset, batch_size, device, limit, seed)["mse"]


@torch.no_grad()
def patch_losses(model: torch.nn.Module, dataset: PatchDataset, batch_size: int, device, limit: int = 0,
                 seed: int = 0) -> dict:
    """The paper's patch MSE (every pixel of every patch) and the MSE over brain pixels only.

    Normalized units; eval mode; over the whole dataset or a seeded subset of ``limit`` patches.
    """
    order = _evaluation_order(len(dataset), limit, seed)
    model.eval()
    total = brain_total = 0.0
    count = brain_count = 0
    for start in range(0, len(order), batch_size):
        items = order[start:start + batch_size]
        inputs, target = dataset[items]
        brain = (inputs[:, 1:2] > 0) if dataset.channels > 1 else torch.from_numpy(dataset.brain_windows(items))[:, None]
        brain = brain.to(device)
        error = (model(inputs.to(device)) - target.to(device)) ** 2
        total += error.sum().item()
        count += error.numel()
        brain_total += error[brain].sum().item()
        brain_count += int(brain.sum())
    return {"mse": total / max(count, 1), "mse_brain": brain_total / max(brain_count, 1), "patches": len(order)}


@dataclass
class Distributed:
    """Where this process sits in a ``torchrun`` job (rank 0 of 1 without one)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def mean(self, value: float) -> float:
        if self.world == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(tensor)
        return tensor.item() / self.world


def init_distributed(device: str) -> Distributed:
    """Join the process group that ``torchrun`` describes in the environment (NCCL on CUDA, else gloo)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Distributed()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device in ("auto", "cuda")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(local_rank)
    return Distributed(rank, world, local_rank)


class Trainer:
    def __init__(self, config: TrainConfig, run_dir: str | Path, progress: bool = True,
                 distributed: Distributed = Distributed()):
        self.config, self.run_dir, self.distributed = config, Path(run_dir), distributed
        tune_allocator()
        self.progress = progress and distributed.main
        if distributed.world > 1:
            if config.optim.batch_size % distributed.world:
                raise InputError(f"optim.batch_size ({config.optim.batch_size}) must divide by the "
                                 f"number of processes ({distributed.world})")
            use_cuda = torch.cuda.is_available() and config.device in ("auto", "cuda")
            self.device = torch.device(f"cuda:{distributed.local_rank}") if use_cuda else torch.device("cpu")
        else:
            self.device = pick_device(config.device)
        torch.manual_seed(config.seed)
        self.model = FCN(config.model.layers, config.data.channels, config.model.width).to(self.device)
        optim = config.optim
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=optim.lr,
                                          betas=(optim.beta1, optim.beta2), eps=optim.eps)
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, optim.lr_step_epochs, optim.lr_gamma)
        self.epoch = 0
        self.memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        self.model = self.model.to(memory_format=self.memory_format)
        self.step_model = self._compiled() if config.compile else self.model
        if distributed.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.step_model = DistributedDataParallel(self.step_model, device_ids=ids)
        self.compile_seconds = 0.0

    def _compiled(self):
        """``torch.compile`` of the model, or the model itself where compiling is not possible."""
        try:
            return torch.compile(self.model)
        except Exception as error:  # pragma: no cover - depends on the platform's toolchain
            tqdm.write(f"warning: torch.compile unavailable ({error}); training in eager mode")
            return self.model

    def _forward(self, inputs):
        if self.step_model is self.model or isinstance(self.step_model, DistributedDataParallel):
            return self.step_model(inputs)
        try:
            started = time.perf_counter()
            first = self.compile_seconds == 0.0
            output = self.step_model(inputs)
            if first:
                self.compile_seconds = time.perf_counter() - started
            return output
        except Exception as error:  # pragma: no cover - compiler failures vary by platform
            tqdm.write(f"warning: torch.compile failed ({type(error).__name__}: {error}); training in eager mode")
            self.step_model = self.model
            return self.model(inputs)

    # -------------------------------------------------------------- run folder

    def start(self, data: RunData) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.toml").write_text(to_toml(self.config))
        data.split.save(self.run_dir / "split.json")
        data.normalization.save(self.run_dir / "normalization.json")
        for name, header in (("history.csv", HISTORY_FIELDS), ("steps.csv", ["step", "epoch", "loss"])):
            with (self.run_dir / name).open("w", newline="") as handle:
                csv.writer(handle).writerow(header)

    def save_checkpoint(self) -> None:
        if not self.distributed.main:
            return
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "torch_rng": torch.get_rng_state(),
        }
        temporary = self.run_dir / (CHECKPOINT + ".tmp")
        torch.save(state, temporary)
        temporary.replace(self.run_dir / CHECKPOINT)

    def load_checkpoint(self) -> None:
        path = self.run_dir / CHECKPOINT
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except (OSError, RuntimeError, EOFError) as error:
            raise InputError(f"cannot read the checkpoint ({error})", path) from error
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch = int(state["epoch"])
        torch.set_rng_state(state["torch_rng"])
        self.distributed.barrier()  # every rank has read the files before rank 0 rewrites them
        if not self.distributed.main:
            return
        _truncate_csv(self.run_dir / "history.csv", lambda row: int(row["epoch"]) <= self.epoch)
        _truncate_csv(self.run_dir / "steps.csv", lambda row: int(row["epoch"]) <= self.epoch)

    # -------------------------------------------------------------- training

    def train_epoch(self, data: RunData) -> dict:
        config, epoch, ranks = self.config, self.epoch + 1, self.distributed
        order = epoch_order(len(data.train), config.seed, epoch, config.data.max_patches_per_epoch)
        if ranks.world > 1:  # each rank takes every world-th patch: equal shards of one global order
            order = order[: len(order) // ranks.world * ranks.world][ranks.rank::ranks.world]
        loader = batch_loader(data.train, order, config.optim.batch_size // ranks.world, config.workers)
        self.model.train()
        lr = self.optimizer.param_groups[0]["lr"]
        started, seen, total, steps = time.perf_counter(), 0, 0.0, []
        bar = tqdm(loader, desc=f"epoch {epoch}/{config.optim.epochs}", unit="batch",
                   disable=not self.progress, leave=False)
        for inputs, target in bar:
            inputs = inputs.to(self.device).contiguous(memory_format=self.memory_format)
            target = target.to(self.device)
            self.optimizer.zero_grad(set_to_none=True)
            loss = F.mse_loss(self._forward(inputs), target)
            loss.backward()
            self.optimizer.step()
            value = ranks.mean(loss.item())
            if not np.isfinite(value):
                raise FloatingPointError(
                    f"training diverged at epoch {epoch} (loss {value}); lower optim.lr (now {lr})")
            seen += len(inputs) * ranks.world
            total += value * len(inputs) * ranks.world
            steps.append(value)
            bar.set_postfix(loss=f"{value:.4g}", patches_s=f"{seen / (time.perf_counter() - started):.1f}")
        seconds = time.perf_counter() - started
        self.scheduler.step()
        row = {"epoch": epoch, "train_loss": total / max(seen, 1), "val_loss": "", "lr": lr,
               "seconds": round(seconds, 2), "patches_per_s": round(seen / seconds, 2)}
        if data.val is not None and ranks.main:
            self.recalibrate(data, config.val_recalibration_batches)
            row["val_loss"] = mean_loss(self.model, data.val, config.optim.batch_size, self.device,
                                        config.data.max_eval_patches, config.seed)
        self.epoch = epoch
        if ranks.main:
            self._append(data, row, steps)
        ranks.barrier()
        return row

    def recalibrate(self, data: RunData, batches: int) -> int:
        order = epoch_order(len(data.train), self.config.seed, 0)[: batches * self.config.optim.batch_size]
        loader = batch_loader(data.train, order, self.config.optim.batch_size)
        return recalibrate_batchnorm(self.model, _inputs_only(loader), batches)

    def _append(self, data: RunData, row: dict, steps: list[float]) -> None:
        with (self.run_dir / "history.csv").open("a", newline="") as handle:
            csv.DictWriter(handle, HISTORY_FIELDS).writerow(row)
        first = (row["epoch"] - 1) * len(steps)
        with (self.run_dir / "steps.csv").open("a", newline="") as handle:
            writer = csv.writer(handle)
            for i, value in enumerate(steps):
                writer.writerow([first + i + 1, row["epoch"], f"{value:.6g}"])

    def export(self, data: RunData) -> dict:
        """Recalibrate BatchNorm, save the model, score validation and test sets in eval mode."""
        used = self.recalibrate(data, self.config.bn_recalibration_batches)
        history = read_history(self.run_dir)
        summary = {
            "epochs": self.epoch,
            "bn_recalibration_batches": used,
            "train_loss": history[-1]["train_loss"] if history else None,
            "train_seconds": sum(float(h["seconds"]) for h in history),
            "patches_per_s": float(np.median([float(h["patches_per_s"]) for h in history])) if history else None,
            "train_patches": len(data.train),
            "compile_seconds": self.compile_seconds,
            "subjects": {"train": data.split.train, "val": data.split.val, "test": data.split.test},
        }
        batch, limit, seed = self.config.optim.batch_size, self.config.data.max_eval_patches, self.config.seed
        for part in ("val", "test"):
            dataset = getattr(data, part)
            if dataset is not None:
                losses = patch_losses(self.model, dataset, batch, self.device, limit, seed)
                summary[f"{part}_loss"] = losses["mse"]
                summary[f"{part}_loss_brain"] = losses["mse_brain"]
                summary[f"{part}_patches"] = losses["patches"]
        info = ModelInfo(
            n_layers=self.config.model.layers, in_channels=self.config.data.channels,
            width=self.config.model.width, normalization=asdict(data.normalization),
            patch_size=data.grid.size, stride=data.grid.stride, axis=self._axis(data),
            training={k: summary[k] for k in ("epochs", "train_patches", "subjects", "train_loss")},
        )
        save_model(self.run_dir / "model", self.model.cpu(), info)
        self.model.to(self.device)
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        plot_learning_curve(self.run_dir)
        return summary

    def _axis(self, data: RunData) -> str:
        return data.train.parts[0].subject.meta["axis_request"]


HISTORY_FIELDS = ["epoch", "train_loss", "val_loss", "lr", "seconds", "patches_per_s"]


def _truncate_csv(path: Path, keep) -> None:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        header, rows = reader.fieldnames, [r for r in reader if keep(r)]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, header)
        writer.writeheader()
        writer.writerows(rows)


def read_history(run_dir: str | Path) -> list[dict]:
    with (Path(run_dir) / "history.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def plot_learning_curve(run_dir: str | Path) -> Path:
    """Train and validation loss per epoch (and per step, faint) as ``learning_curve.png``."""
    from .figures import learning_curve_figure

    run_dir = Path(run_dir)
    with (run_dir / "steps.csv").open(newline="") as handle:
        steps = list(csv.DictReader(handle))
    return learning_curve_figure(read_history(run_dir), steps, run_dir / "learning_curve.png")


def train(config: TrainConfig, run_dir: str | Path, resume: bool = False, progress: bool = True,
          stop_after_epoch: int | None = None) -> dict:
    """Train (or resume) a run; returns the summary (``stop_after_epoch`` stops early, for tests)."""
    run_dir = Path(run_dir)
    ranks = init_distributed(config.device)
    if resume:
        if not (run_dir / CHECKPOINT).exists():
            raise InputError("no checkpoint to resume from", run_dir)
        data = build_data(config, Split.load(run_dir / "split.json"))
    else:
        if (run_dir / CHECKPOINT).exists() or (run_dir / "model").exists():
            raise InputError("run folder already holds a run; use --resume or another folder", run_dir)
        data = build_data(config)
    ranks.barrier()  # every rank has checked the folder before rank 0 writes to it
    trainer = Trainer(config, run_dir, progress, ranks)
    if resume:
        trainer.load_checkpoint()
    elif ranks.main:
        trainer.start(data)
    epochs = tqdm(total=config.optim.epochs, initial=trainer.epoch, desc="train", unit="epoch",
                  disable=not trainer.progress)
    while trainer.epoch < config.optim.epochs:
        row = trainer.train_epoch(data)
        trainer.save_checkpoint()
        epochs.update()
        epochs.set_postfix(train=f"{row['train_loss']:.4g}", val=f"{row['val_loss']:.4g}" if row["val_loss"] != "" else "-")
        if stop_after_epoch is not None and trainer.epoch >= stop_after_epoch:
            epochs.close()
            return {"stopped_after_epoch": trainer.epoch}
    epochs.close()
    if not ranks.main:
        ranks.barrier()
        return {"rank": ranks.rank, "exported_by": 0}
    summary = trainer.export(data)
    ranks.barrier()
    return summary


def resume_config(run_dir: str | Path, overrides: list[str] = ()) -> TrainConfig:
    """The config a run was started with (``config.toml``), with optional overrides (e.g. more epochs)."""
    return load_config(Path(run_dir) / "config.toml", overrides)
