"""The one training loop: a network stepped by its optimizer and schedule, checkpointed, resumed bit for bit.

``mrsynth train`` (epochs over a run's patches, :mod:`.trainer`) and ``mrsynth pretrain`` (steps over simulated
crops, :mod:`.recipes`) both step their networks here, so that what a step does -- forward (``torch.compile``d and
under torchrun wrapped in DistributedDataParallel, :mod:`.distributed`), loss, backward, gradient clipping, the
optimizer's step, the moving average of the weights, the schedule -- and what a checkpoint holds are written once.
This is the only module that calls an optimizer's ``step()``.

A checkpoint holds the weights (and their moving average), the optimizer and schedule, the step and epoch counts,
torch's random state and the settings of the run; :meth:`Loop.load` refuses one written with other settings,
naming them.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Callable

import torch
from torch.optim.swa_utils import AveragedModel

from ..atomic import write_file
from ..errors import InputError
from .distributed import Distributed, StepNetwork


class Loop:
    """A network, its optimizer and schedule, and where it is: steps taken, epochs finished."""

    def __init__(
        self,
        model: torch.nn.Module,
        device: torch.device,
        ranks: Distributed | None = None,
        clip: float = 0.0,
        compile: bool = False,
        memory_format=torch.channels_last,
        averaged: AveragedModel | None = None,
    ):
        self.model, self.device, self.ranks = model, device, ranks or Distributed()
        self.clip, self.memory_format, self.averaged = clip, memory_format, averaged
        self.network = StepNetwork(model, compile, self.ranks, device)
        self.optimizer: torch.optim.Optimizer | None = None
        self.schedule = None
        self.schedule_per = "step"
        self.step, self.epoch = 0, 0

    def use(self, optimizer: torch.optim.Optimizer, schedule, per: str = "step") -> None:
        """Step with ``optimizer``, and ``schedule`` after every step (``per="step"``) or epoch (``"epoch"``)."""
        self.optimizer, self.schedule, self.schedule_per = optimizer, schedule, per

    def train_step(self, inputs: torch.Tensor, loss_of: Callable[[torch.Tensor], torch.Tensor]) -> float:
        """One optimizer step on a batch: ``loss_of(network output)`` minimized; returns the loss (the mean over the
        torchrun processes)."""
        inputs = inputs.to(self.device).contiguous(memory_format=self.memory_format)
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss = loss_of(self.network(inputs))
        loss.backward()
        if self.clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.optimizer.step()
        if self.averaged is not None:
            self.averaged.update_parameters(self.model)
        if self.schedule_per == "step":
            self.schedule.step()
        self.step += 1
        return self.ranks.mean(loss.item())

    def end_epoch(self) -> None:
        if self.schedule_per == "epoch":
            self.schedule.step()
        self.epoch += 1

    def state(self, settings: dict) -> dict:
        return {
            "model": self.model.state_dict(),
            "averaged": self.averaged.state_dict() if self.averaged is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "torch_rng": torch.get_rng_state(),
            "settings": settings,
        }

    def save(self, path: Path, settings: dict) -> None:
        """Write the checkpoint (on rank 0 only), atomically: serialized first, so a failed write is a plain
        OSError and never a half-written file."""
        if not self.ranks.main:
            return
        buffer = io.BytesIO()
        torch.save(self.state(settings), buffer)
        write_file(Path(path), lambda temporary: temporary.write_bytes(buffer.getvalue()))

    def load(self, path: Path, settings: dict, before_restore: Callable[[int], None] | None = None) -> None:
        """Continue from a checkpoint written with the same ``settings`` (tensors only, no code unpickled);
        ``before_restore(step)`` sets up the optimizer the checkpoint's step was taken with."""
        state = read_checkpoint(path)
        saved = state.get("settings", state.get("config"))
        if saved is not None and saved != settings:
            differ = [
                f"{k} {saved.get(k)!r} (now {settings.get(k)!r})" for k in settings if saved.get(k) != settings[k]
            ]
            raise InputError(
                "the checkpoint was written with other settings: "
                + "; ".join(differ or ["their fields"])
                + ". Resume with the same ones",
                path,
            )
        try:
            if before_restore is not None:
                before_restore(int(state["step"]))
            self.model.load_state_dict(state["model"])
            if self.averaged is not None:
                self.averaged.load_state_dict(state["averaged"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.schedule.load_state_dict(state.get("schedule", state.get("scheduler")))
            self.step, self.epoch = int(state.get("step", 0)), int(state.get("epoch", 0))
            if "torch_rng" in state:
                torch.set_rng_state(state["torch_rng"])
        except (RuntimeError, KeyError, TypeError, ValueError, IndexError) as error:
            raise InputError(f"cannot resume from this checkpoint ({type(error).__name__}: {error})", path) from None


def read_checkpoint(path: Path) -> dict:
    """A checkpoint's contents, or a clean error naming the file: none there yet, or not readable."""
    path = Path(path)
    if not path.exists():
        raise InputError("no checkpoint to resume from yet (the run stopped before its first one)", path.parent)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, ValueError, TypeError) as error:
        raise InputError(f"cannot resume from this checkpoint ({type(error).__name__}: {error})", path) from None
    if not isinstance(state, dict) or "model" not in state:
        raise InputError("cannot resume from this checkpoint (not a mrsynth checkpoint)", path)
    return state
