"""Training: a config -> a run folder (:mod:`mrsynth.training.runs`) with checkpoints and the exported model.

Read top to bottom: :func:`train` builds the run's data and a :class:`Trainer`, which goes through the
epochs (:meth:`Trainer.train_epoch`: batches, augmentation, loss, history), each step taken by the one training
loop (:mod:`.loop`: optimizer, schedule, moving average; device, torchrun ranks and ``torch.compile`` from
:mod:`.distributed`), checkpoints after each epoch and exports the model at the end (:mod:`.export`).

Determinism: the initial weights come from ``seed``, and epoch ``e`` visits the training
patches in an order drawn from ``(seed, e)`` alone, so a resumed run follows exactly the
path of an uninterrupted one (on the CPU).
"""

from __future__ import annotations

import copy
import shutil
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from .. import networks
from ..atomic import write_text
from ..data import augment, augment_batch, batch_loader
from ..errors import InputError
from ..logs import bar, log
from ..networks import IntensityMap, build_network, recalibrate_batchnorm
from ..runtime import tune_allocator
from . import runs
from .baselines import fit_network_lookup
from .config import TrainConfig, input_spec, validate
from .configfile import to_toml
from .distributed import Distributed, init_distributed, training_device
from .export import export_run
from .loop import Loop
from .losses import loss_function, mean_loss
from .runs import RunData, build_data


def epoch_order(n: int, seed: int, epoch: int, limit: int = 0) -> list[int]:
    """The training patches of one epoch, in order: a permutation drawn from (seed, epoch)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(n, generator=generator)
    return (order[:limit] if limit else order).tolist()


def _inputs_only(loader):
    for inputs, _ in loader:
        yield inputs


def _augmentations(config: TrainConfig) -> list:
    """The augmentations the config switches on, refused where the data cannot take them."""
    active = augment.active(config.augment)
    unstripped = [a for a in active if a.needs_strip]
    if unstripped and not config.data.strip:
        raise InputError(
            f"{augment.settings_of(unstripped)} shrinks the edge of a stripped T1w: it needs data.strip = true"
        )
    scaled = [a for a in active if a.needs_scaled_intensities]
    if scaled and config.data.norm == "paper":
        raise InputError(
            f'{augment.settings_of(scaled)} need a scaling normalization (data.norm = "robust", '
            '"percentile" or "histogram"), not the paper\'s mean subtraction'
        )
    return active


def _check_input_size(config: TrainConfig) -> None:
    """Training patches (or tiles) at least as large as the network can take (a U-Net's poolings need 16)."""
    smallest = getattr(networks.network_class(config.model.kind), "min_size", 1)
    name = "data.tile_size" if config.data.sampling == "tiles" else "data.patch_size"
    size = config.data.tile_size if config.data.sampling == "tiles" else config.data.patch_size
    if size < smallest:
        raise InputError(
            f"config field {name} = {size}: a {config.model.kind} network needs at least {smallest} pixels per side"
        )


def _start_from(model: torch.nn.Module, init: str, in_channels: int, config: TrainConfig) -> None:
    """The weights of the model ``init`` (``pretrained`` or a folder) copied into ``model``, whose network must be
    the same; a network that corrects a lookup table keeps the table fitted on this run's subjects.  Where the
    run's input contract differs from the model's, the log says how."""
    source, info = networks.load_model(init)
    found = {
        "kind": info.kind,
        "parameters": info.params,
        "input channels": info.in_channels,
        "lookup": info.lookup,
        "outputs": list(info.outputs),
    }
    wanted = {
        "kind": config.model.kind,
        "parameters": config.model.params,
        "input channels": in_channels,
        "lookup": config.model.lookup,
        "outputs": list(networks.T2W),
    }
    differ = [f"{k} {found[k]} (configured: {wanted[k]})" for k in found if found[k] != wanted[k]]
    if differ:
        raise InputError(
            f"init = {init!r}: that model's network differs from this run's: {'; '.join(differ)} "
            "(leave the network unset to take the model's, e.g. --preset finetune for the pretrained model)"
        )
    mine = input_spec(config, axis=info.spec.axis)
    if mine.normalization.method == info.norm().method:  # refitted on this run's subjects: the method is the contract
        mine = mine.with_normalization(info.norm())
    changes = info.spec.changes(mine)
    if changes:
        log.warning("init = %r: this run changes the model's input contract: %s", init, "; ".join(changes))
    own_table = {k for k in model.state_dict() if k.startswith("lookup.")}
    state = {k: v for k, v in source.state_dict().items() if k not in own_table}
    model.load_state_dict({**{k: model.state_dict()[k] for k in own_table}, **state})


class Trainer:
    """The network, its optimizer and schedule, and the epoch loop of one run."""

    def __init__(
        self,
        config: TrainConfig,
        run_dir: str | Path,
        progress: bool = True,
        distributed: Distributed | None = None,
        lookup: IntensityMap | None = None,
    ):
        distributed = distributed or Distributed()  # one process, not a torchrun job
        self.config, self.run_dir, self.distributed = config, Path(run_dir), distributed
        tune_allocator()
        self.progress = progress and distributed.main
        self.device = training_device(config.device, config.optim.batch_size, distributed)
        self.augmentations = _augmentations(config)
        self.loss = loss_function(config.optim.loss)
        torch.manual_seed(config.seed)
        spec = input_spec(config)
        self.t1_channels, self.in_channels = spec.t1_channels, spec.in_channels
        _check_input_size(config)
        try:
            self.model = build_network(config.model.kind, self.in_channels, config.model.params, lookup)
        except ValueError as error:
            raise InputError(f"model: {error}") from error
        if config.init:
            _start_from(self.model, config.init, self.in_channels, config)
        self.memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        self.model = self.model.to(self.device).to(memory_format=self.memory_format)
        optim = config.optim
        #: an exponential moving average of the weights (optim.ema): what is validated and exported
        averaged = (
            None
            if not optim.ema
            else AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(optim.ema), use_buffers=True)
        )
        self.loop = Loop(self.model, self.device, distributed, optim.clip, config.compile, self.memory_format, averaged)
        optimizer = torch.optim.Adam(
            self.model.parameters(), lr=optim.lr, betas=(optim.beta1, optim.beta2), eps=optim.eps
        )
        schedule = torch.optim.lr_scheduler.StepLR(optimizer, optim.lr_step_epochs, optim.lr_gamma)
        self.loop.use(optimizer, schedule, "epoch")

    @property
    def epoch(self) -> int:
        return self.loop.epoch

    @property
    def averaged(self) -> AveragedModel | None:
        return self.loop.averaged

    def start(self, data: RunData) -> None:
        """A new run folder: its configuration (the cache recorded so that the run reopens from anywhere), split,
        normalization and empty history."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        recorded = copy.deepcopy(self.config)
        recorded.data.cache = str(runs.record_cache(self.run_dir, self.config.data.cache))
        write_text(self.run_dir / runs.CONFIG, to_toml(recorded))
        data.split.save(self.run_dir / runs.SPLIT)
        data.normalization.save(self.run_dir / runs.NORMALIZATION)
        runs.start_history(self.run_dir)

    def train_epoch(self, data: RunData) -> dict:
        config, epoch, ranks = self.config, self.epoch + 1, self.distributed
        order = epoch_order(len(data.train), config.seed, epoch, config.data.max_patches_per_epoch)
        if ranks.world > 1:  # each rank takes every world-th patch: equal shards of one global order
            order = order[: len(order) // ranks.world * ranks.world][ranks.rank :: ranks.world]
        loader = batch_loader(data.train, order, config.optim.batch_size // ranks.world, config.workers)
        self.model.train()
        lr = self.loop.optimizer.param_groups[0]["lr"]
        started, seen, total, steps = time.perf_counter(), 0, 0.0, []
        batches = bar(
            loader, allowed=self.progress, desc=f"epoch {epoch}/{config.optim.epochs}", unit="batch", leave=False
        )
        for inputs, target in batches:
            if self.augmentations:
                inputs, target = augment_batch(inputs, target, config.augment, self.t1_channels)
            value = self.loop.train_step(inputs, partial(self.loss, target=target.to(self.device)))
            if not np.isfinite(value):
                raise FloatingPointError(
                    f"training diverged at epoch {epoch} (loss {value}); lower optim.lr (now {lr})"
                )
            seen += len(inputs) * ranks.world
            total += value * len(inputs) * ranks.world
            steps.append(value)
            batches.set_postfix(loss=f"{value:.4g}", patches_s=f"{seen / (time.perf_counter() - started):.1f}")
        seconds = time.perf_counter() - started
        self.loop.end_epoch()
        row = {
            "epoch": epoch,
            "train_loss": total / max(seen, 1),
            "val_loss": "",
            "lr": lr,
            "seconds": round(seconds, 2),
            "patches_per_s": round(seen / seconds, 2),
        }
        if data.val is not None and ranks.main:
            self.recalibrate(data, config.val_recalibration_batches)
            row["val_loss"] = mean_loss(
                self.final_model,
                data.val,
                config.optim.batch_size,
                self.device,
                config.data.max_eval_patches,
                config.seed,
            )
        if ranks.main:
            runs.append_history(self.run_dir, row, steps)
        ranks.barrier()
        return row

    def save_checkpoint(self) -> None:
        """``checkpoint.pt`` after an epoch (rank 0), atomically: :meth:`~.loop.Loop.save`."""
        self.loop.save(self.run_dir / runs.CHECKPOINT, {})

    def load_checkpoint(self) -> None:
        """Continue from the run's ``checkpoint.pt``; the history rows after its epoch are dropped, since the
        resumed run writes them again."""
        self.loop.load(self.run_dir / runs.CHECKPOINT, {})
        self.distributed.barrier()  # every rank has read the files before rank 0 rewrites them
        if self.distributed.main:
            runs.truncate_history(self.run_dir, self.epoch)

    def recalibrate(self, data: RunData, batches: int) -> int:
        """BatchNorm statistics averaged over the first training batches (seeded), in place."""
        order = epoch_order(len(data.train), self.config.seed, 0)[: batches * self.config.optim.batch_size]
        loader = batch_loader(data.train, order, self.config.optim.batch_size)
        return recalibrate_batchnorm(self.final_model, _inputs_only(loader), batches)

    @property
    def final_model(self) -> torch.nn.Module:
        """The network that is validated and exported: the trained weights, or their moving average."""
        return self.model if self.averaged is None else self.averaged.module


def network_lookup(config: TrainConfig, data: RunData) -> IntensityMap | None:
    """The lookup table a ``model.lookup`` network corrects, fitted on the run's training subjects (deterministic,
    so a resumed run fits the same one before its checkpoint is loaded)."""
    if not config.model.lookup:
        return None
    if config.data.norm == "paper":
        raise InputError(
            'model.lookup needs a scaling normalization (data.norm = "robust", "percentile" or '
            '"histogram"), not the paper\'s mean subtraction'
        )
    return fit_network_lookup([part.subject for part in data.train.parts], data.normalization)


@torch.no_grad()
def check(config: TrainConfig) -> dict:
    """What :func:`train` checks before it writes anything, and one batch through the network and the loss:
    the configuration, the prepared subjects and split, the network.  Writes nothing; returns a summary."""
    validate(config)
    data = build_data(config)
    trainer = Trainer(config, Path("."), progress=False, lookup=network_lookup(config, data))
    order = epoch_order(len(data.train), config.seed, 1)[: min(config.optim.batch_size, 2)]
    inputs, target = next(iter(batch_loader(data.train, order, len(order))))
    if trainer.augmentations:
        inputs, target = augment_batch(inputs, target, config.augment, trainer.t1_channels)
    inputs = inputs.to(trainer.device).contiguous(memory_format=trainer.memory_format)
    loss = float(trainer.loss(trainer.model.eval()(inputs), target.to(trainer.device)))
    return {
        "train_patches": len(data.train),
        "val_patches": len(data.val) if data.val is not None else 0,
        "test_patches": len(data.test) if data.test is not None else 0,
        "parameters": sum(p.numel() for p in trainer.model.parameters()),
        "device": str(trainer.device),
        "first_batch_loss": loss,
    }


def _epoch_line(row: dict, epochs: int) -> str:
    val = f", val {row['val_loss']:.4g}" if row["val_loss"] != "" else ""
    return (
        f"epoch {row['epoch']}/{epochs}: train {row['train_loss']:.4g}{val}, lr {row['lr']:.3g}, "
        f"{row['seconds']:.1f} s, {row['patches_per_s']:.1f} patches/s"
    )


def train(
    config: TrainConfig,
    run_dir: str | Path,
    resume: bool = False,
    progress: bool = True,
    stop_after_epoch: int | None = None,
) -> dict:
    """Train (or resume) a run; returns the summary (``stop_after_epoch`` stops early, for tests).

    A configuration with a value its field does not allow is refused before anything is written.
    """
    run_dir = Path(run_dir)
    validate(config)
    ranks = init_distributed(config.device)
    if resume:
        if not (run_dir / runs.CHECKPOINT).exists():
            raise InputError("no checkpoint to resume from", run_dir)
        data = runs.load_run_data(run_dir, config)
    else:
        if (run_dir / runs.CHECKPOINT).exists() or (run_dir / runs.MODEL).exists():
            raise InputError("run folder already holds a run; use --resume or another folder", run_dir)
        data = build_data(config)
    ranks.barrier()  # every rank has checked the folder before rank 0 writes to it
    trainer = Trainer(config, run_dir, progress, ranks, network_lookup(config, data))
    if resume:
        trainer.load_checkpoint()
    elif ranks.main:
        trainer.start(data)
    epochs = bar(total=config.optim.epochs, initial=trainer.epoch, allowed=trainer.progress, desc="train", unit="epoch")
    while trainer.epoch < config.optim.epochs:
        row = trainer.train_epoch(data)
        trainer.save_checkpoint()
        epochs.update()
        epochs.set_postfix(
            train=f"{row['train_loss']:.4g}", val=f"{row['val_loss']:.4g}" if row["val_loss"] != "" else "-"
        )
        if ranks.main and epochs.disable:
            log.info(_epoch_line(row, config.optim.epochs))
        if stop_after_epoch is not None and trainer.epoch >= stop_after_epoch:
            epochs.close()
            return {"stopped_after_epoch": trainer.epoch}
    epochs.close()
    if not ranks.main:
        ranks.barrier()
        return {"rank": ranks.rank, "exported_by": 0}
    summary = export_run(trainer, data)
    ranks.barrier()
    return summary


def train_or_reuse(config: TrainConfig, run_dir: str | Path, progress: bool = True) -> tuple[Path, str]:
    """Train a run unless ``run_dir`` holds a finished one; resume an unfinished one from its checkpoint.

    Returns the folder and what happened: ``reused``, ``resumed`` or ``trained``.  The caller
    names the folder after the configuration (a hash) when a changed configuration must not
    reuse an old run.
    """
    run_dir = Path(run_dir)
    status = runs.state(run_dir)
    if status == "trained" and run_dir.exists():  # started but no epoch finished: start again
        shutil.rmtree(run_dir)
    if status != "reused":
        train(config, run_dir, resume=status == "resumed", progress=progress)
    return run_dir, status
