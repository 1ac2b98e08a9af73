"""The end of a run: BatchNorm statistics recalibrated, validation and test patches scored in eval mode, the
model exported as a model file (:mod:`mrsynth.networks.modelfile`) with its description, and ``summary.json``."""

from __future__ import annotations

import json

import numpy as np

from ..atomic import write_text
from ..networks import ModelInfo, save_model
from . import runs
from .losses import patch_losses


def export_run(trainer, data: runs.RunData) -> dict:
    """Recalibrate, score, save the model and the summary of a :class:`~mrsynth.training.trainer.Trainer`'s run."""
    config, run_dir = trainer.config, trainer.run_dir
    used = trainer.recalibrate(data, config.bn_recalibration_batches)
    summary = _training_summary(runs.read_history(run_dir), data, used, trainer)
    for part in ("val", "test"):
        dataset = getattr(data, part)
        if dataset is not None:
            losses = patch_losses(
                trainer.final_model,
                dataset,
                config.optim.batch_size,
                trainer.device,
                config.data.max_eval_patches,
                config.seed,
            )
            summary[f"{part}_loss"] = losses["mse"]
            summary[f"{part}_loss_brain"] = losses["mse_brain"]
            summary[f"{part}_patches"] = losses["patches"]
    training = {k: summary[k] for k in ("epochs", "train_patches", "subjects", "train_loss")}
    info = ModelInfo(
        kind=config.model.kind,
        spec=data.spec,
        params=dict(config.model.params),
        lookup=config.model.lookup,
        masks=data.masks,
        patch_size=data.grid.size,
        stride=data.grid.stride,
        training={**training, "init": config.init} if config.init else training,
    )
    save_model(run_dir / runs.MODEL, trainer.final_model.cpu(), info)
    trainer.final_model.to(trainer.device)
    write_text(run_dir / runs.SUMMARY, json.dumps(summary, indent=2) + "\n")
    runs.plot_learning_curve(run_dir)
    return summary


def _training_summary(history: list[dict], data: runs.RunData, recalibration_batches: int, trainer) -> dict:
    return {
        "epochs": trainer.epoch,
        "bn_recalibration_batches": recalibration_batches,
        "train_loss": float(history[-1]["train_loss"]) if history else None,
        "train_seconds": sum(float(h["seconds"]) for h in history),
        "patches_per_s": float(np.median([float(h["patches_per_s"]) for h in history])) if history else None,
        "train_patches": len(data.train),
        "compile_seconds": trainer.loop.network.compile_seconds,
        "subjects": {"train": data.split.train, "val": data.split.val, "test": data.split.test},
    }
