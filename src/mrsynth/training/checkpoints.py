"""Checkpoints: the whole training state after every epoch, so that ``--resume`` continues exactly where a run
stopped (weights, their moving average, optimizer, schedule, epoch and torch's random state)."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import torch

from ..atomic import write_file
from ..errors import InputError
from . import runs


def save_checkpoint(trainer) -> None:
    """Write ``checkpoint.pt`` of a :class:`~mrsynth.training.trainer.Trainer` (rank 0 only), atomically."""
    if not trainer.distributed.main:
        return
    state = {
        "model": trainer.model.state_dict(),
        "averaged": trainer.averaged.state_dict() if trainer.averaged is not None else None,
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict(),
        "epoch": trainer.epoch,
        "torch_rng": torch.get_rng_state(),
    }
    buffer = io.BytesIO()  # serialized first: a failed write is then a plain OSError, not torch's own
    torch.save(state, buffer)
    write_file(trainer.run_dir / runs.CHECKPOINT, lambda temporary: temporary.write_bytes(buffer.getvalue()))


def load_checkpoint(trainer) -> None:
    """Restore a trainer from its run's ``checkpoint.pt`` (tensors only, no code unpickled); the history rows after
    the checkpoint's epoch are dropped, since the resumed run writes them again."""
    path = Path(trainer.run_dir) / runs.CHECKPOINT
    try:
        state = torch.load(path, map_location=trainer.device, weights_only=True)
        trainer.model.load_state_dict(state["model"])
        if trainer.averaged is not None:
            trainer.averaged.load_state_dict(state["averaged"])
        trainer.optimizer.load_state_dict(state["optimizer"])
        trainer.scheduler.load_state_dict(state["scheduler"])
        trainer.epoch = int(state["epoch"])
        torch.set_rng_state(state["torch_rng"])
    except (
        OSError,
        RuntimeError,
        EOFError,
        KeyError,
        TypeError,
        ValueError,
        IndexError,
        pickle.UnpicklingError,
    ) as error:
        raise InputError(f"cannot resume from this checkpoint ({type(error).__name__}: {error})", path) from None
    trainer.distributed.barrier()  # every rank has read the files before rank 0 rewrites them
    if trainer.distributed.main:
        runs.truncate_history(trainer.run_dir, trainer.epoch)
