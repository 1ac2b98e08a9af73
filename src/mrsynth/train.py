"""Training: a config -> a run folder (:mod:`mrsynth.runs`) with checkpoints and the exported model.

Determinism: the initial weights come from ``seed``, and epoch ``e`` visits the training
patches in an order drawn from ``(seed, e)`` alone, so a resumed run follows exactly the
path of an uninterrupted one (on the CPU).
"""

from __future__ import annotations

import io
import json
import pickle
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from . import runs
from .atomic import remove_leftovers, write_file, write_text
from .augment import augment_batch, is_active, needs_scaled_intensities
from .config import TrainConfig, to_toml
from .distributed import Distributed, init_distributed
from .errors import InputError
from .logs import bar, log
from .metrics import mean_loss, patch_losses
from .modelfile import ModelInfo, save_model
from .baselines import fit_network_lookup
from .networks import IntensityMap, build_network, recalibrate_batchnorm
from .patches import batch_loader, input_channels, slice_offsets
from .runs import RunData, build_data
from .runtime import pick_device, tune_allocator


def epoch_order(n: int, seed: int, epoch: int, limit: int = 0) -> list[int]:
    """The training patches of one epoch, in order: a permutation drawn from (seed, epoch)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(n, generator=generator)
    return (order[:limit] if limit else order).tolist()


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


def _inputs_only(loader):
    for inputs, _ in loader:
        yield inputs


class Trainer:
    def __init__(self, config: TrainConfig, run_dir: str | Path, progress: bool = True,
                 distributed: Distributed = Distributed(), lookup: IntensityMap | None = None):
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
        self.in_channels = input_channels(config.data.channels, config.data.context)
        try:
            self.model = build_network(config.model.kind, self.in_channels, config.model.layers, config.model.width,
                                       config.model.features, config.model.norm, lookup).to(self.device)
        except ValueError as error:
            raise InputError(f"model: {error}") from error
        self.loss = loss_function(config.optim.loss)
        if config.augment.erode and not config.data.strip:
            raise InputError("augment.erode shrinks the edge of a stripped T1w: it needs data.strip = true")
        if needs_scaled_intensities(config.augment) and config.data.norm == "paper":
            raise InputError("augment.gamma, bias, noise, erode, rotate and scale need a scaling normalization "
                             "(data.norm = \"robust\" or \"percentile\"), not the paper's mean subtraction")
        optim = config.optim
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=optim.lr,
                                          betas=(optim.beta1, optim.beta2), eps=optim.eps)
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, optim.lr_step_epochs, optim.lr_gamma)
        self.epoch = 0
        self.memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        self.model = self.model.to(memory_format=self.memory_format)
        #: an exponential moving average of the weights (optim.ema): what is validated and exported
        self.averaged = None if not optim.ema else AveragedModel(
            self.model, multi_avg_fn=get_ema_multi_avg_fn(optim.ema), use_buffers=True)
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
            log.warning("torch.compile unavailable (%s); training in eager mode", error)
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
            log.warning("torch.compile failed (%s: %s); training in eager mode", type(error).__name__, error)
            self.step_model = self.model
            return self.model(inputs)

    # -------------------------------------------------------------- run folder

    def start(self, data: RunData) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_text(self.run_dir / runs.CONFIG, to_toml(self.config))
        data.split.save(self.run_dir / runs.SPLIT)
        data.normalization.save(self.run_dir / runs.NORMALIZATION)
        runs.start_history(self.run_dir)

    def save_checkpoint(self) -> None:
        if not self.distributed.main:
            return
        state = {
            "model": self.model.state_dict(),
            "averaged": self.averaged.state_dict() if self.averaged is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "torch_rng": torch.get_rng_state(),
        }
        buffer = io.BytesIO()  # serialized first: a failed write is then a plain OSError, not torch's own
        torch.save(state, buffer)
        write_file(self.run_dir / runs.CHECKPOINT, lambda temporary: temporary.write_bytes(buffer.getvalue()))

    def load_checkpoint(self) -> None:
        path = self.run_dir / runs.CHECKPOINT
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
            self.model.load_state_dict(state["model"])
            if self.averaged is not None:
                self.averaged.load_state_dict(state["averaged"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.epoch = int(state["epoch"])
            torch.set_rng_state(state["torch_rng"])
        except (OSError, RuntimeError, EOFError, KeyError, TypeError, ValueError, IndexError,
                pickle.UnpicklingError) as error:
            raise InputError(f"cannot resume from this checkpoint ({type(error).__name__}: {error})", path) from None
        self.distributed.barrier()  # every rank has read the files before rank 0 rewrites them
        if self.distributed.main:
            runs.truncate_history(self.run_dir, self.epoch)

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
        batches = bar(loader, allowed=self.progress, desc=f"epoch {epoch}/{config.optim.epochs}", unit="batch",
                      leave=False)
        for inputs, target in batches:
            if is_active(config.augment):
                inputs, target = augment_batch(inputs, target, config.augment, len(slice_offsets(config.data.context)))
            inputs = inputs.to(self.device).contiguous(memory_format=self.memory_format)
            target = target.to(self.device)
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.loss(self._forward(inputs), target)
            loss.backward()
            if config.optim.clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.optim.clip)
            self.optimizer.step()
            if self.averaged is not None:
                self.averaged.update_parameters(self.model)
            value = ranks.mean(loss.item())
            if not np.isfinite(value):
                raise FloatingPointError(
                    f"training diverged at epoch {epoch} (loss {value}); lower optim.lr (now {lr})")
            seen += len(inputs) * ranks.world
            total += value * len(inputs) * ranks.world
            steps.append(value)
            batches.set_postfix(loss=f"{value:.4g}", patches_s=f"{seen / (time.perf_counter() - started):.1f}")
        seconds = time.perf_counter() - started
        self.scheduler.step()
        row = {"epoch": epoch, "train_loss": total / max(seen, 1), "val_loss": "", "lr": lr,
               "seconds": round(seconds, 2), "patches_per_s": round(seen / seconds, 2)}
        if data.val is not None and ranks.main:
            self.recalibrate(data, config.val_recalibration_batches)
            row["val_loss"] = mean_loss(self.final_model, data.val, config.optim.batch_size, self.device,
                                        config.data.max_eval_patches, config.seed)
        self.epoch = epoch
        if ranks.main:
            runs.append_history(self.run_dir, row, steps)
        ranks.barrier()
        return row

    def recalibrate(self, data: RunData, batches: int) -> int:
        order = epoch_order(len(data.train), self.config.seed, 0)[: batches * self.config.optim.batch_size]
        loader = batch_loader(data.train, order, self.config.optim.batch_size)
        return recalibrate_batchnorm(self.final_model, _inputs_only(loader), batches)

    @property
    def final_model(self) -> torch.nn.Module:
        """The network that is validated and exported: the trained weights, or their moving average."""
        return self.model if self.averaged is None else self.averaged.module

    def export(self, data: RunData) -> dict:
        """Recalibrate BatchNorm, save the model, score validation and test sets in eval mode."""
        used = self.recalibrate(data, self.config.bn_recalibration_batches)
        history = runs.read_history(self.run_dir)
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
                losses = patch_losses(self.final_model, dataset, batch, self.device, limit, seed)
                summary[f"{part}_loss"] = losses["mse"]
                summary[f"{part}_loss_brain"] = losses["mse_brain"]
                summary[f"{part}_patches"] = losses["patches"]
        model = self.config.model
        info = ModelInfo(
            n_layers=model.layers, in_channels=self.in_channels, width=model.width, kind=model.kind,
            features=list(model.features) if model.kind == "unet" else [], context=self.config.data.context,
            feature_norm=model.norm if model.kind == "unet" else "batch", lookup=model.lookup,
            strip=self.config.data.strip, masks=data.masks,
            normalization=asdict(data.normalization),
            patch_size=data.grid.size, stride=data.grid.stride, axis=data.axis,
            training={k: summary[k] for k in ("epochs", "train_patches", "subjects", "train_loss")},
        )
        save_model(self.run_dir / runs.MODEL, self.final_model.cpu(), info)
        self.final_model.to(self.device)
        write_text(self.run_dir / runs.SUMMARY, json.dumps(summary, indent=2) + "\n")
        runs.plot_learning_curve(self.run_dir)
        return summary


def network_lookup(config: TrainConfig, data: RunData) -> IntensityMap | None:
    """The lookup table a ``model.lookup`` network corrects, fitted on the run's training subjects (deterministic,
    so a resumed run fits the same one before its checkpoint is loaded)."""
    if not config.model.lookup:
        return None
    if config.data.norm == "paper":
        raise InputError("model.lookup needs a scaling normalization (data.norm = \"robust\", \"percentile\" or "
                         "\"histogram\"), not the paper's mean subtraction")
    return fit_network_lookup([part.subject for part in data.train.parts], data.normalization)


def _epoch_line(row: dict, epochs: int) -> str:
    val = f", val {row['val_loss']:.4g}" if row["val_loss"] != "" else ""
    return (f"epoch {row['epoch']}/{epochs}: train {row['train_loss']:.4g}{val}, lr {row['lr']:.3g}, "
            f"{row['seconds']:.1f} s, {row['patches_per_s']:.1f} patches/s")


def train(config: TrainConfig, run_dir: str | Path, resume: bool = False, progress: bool = True,
          stop_after_epoch: int | None = None) -> dict:
    """Train (or resume) a run; returns the summary (``stop_after_epoch`` stops early, for tests)."""
    run_dir = Path(run_dir)
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
    epochs = bar(total=config.optim.epochs, initial=trainer.epoch, allowed=trainer.progress, desc="train",
                 unit="epoch")
    while trainer.epoch < config.optim.epochs:
        row = trainer.train_epoch(data)
        trainer.save_checkpoint()
        epochs.update()
        epochs.set_postfix(train=f"{row['train_loss']:.4g}", val=f"{row['val_loss']:.4g}" if row["val_loss"] != "" else "-")
        if ranks.main and epochs.disable:
            log.info(_epoch_line(row, config.optim.epochs))
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


def train_or_reuse(config: TrainConfig, run_dir: str | Path, progress: bool = True) -> tuple[Path, str]:
    """Train a run unless ``run_dir`` holds a finished one; resume an unfinished one from its checkpoint.

    Returns the folder and what happened: ``reused``, ``resumed`` or ``trained``.  The caller
    names the folder after the configuration (a hash) when a changed configuration must not
    reuse an old run.
    """
    run_dir = Path(run_dir)
    if runs.is_finished(run_dir):
        return run_dir, "reused"
    if (run_dir / runs.CHECKPOINT).exists():
        train(config, run_dir, resume=True, progress=progress)
        return run_dir, "resumed"
    if run_dir.exists():  # started but no epoch finished: start again
        shutil.rmtree(run_dir)
    train(config, run_dir, progress=progress)
    return run_dir, "trained"
