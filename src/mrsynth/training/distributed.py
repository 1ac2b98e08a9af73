"""Where a training step runs: this process's place in a ``torchrun`` job (PyTorch's own distributed engine,
nothing home-made), its device, and the network it steps (channels-last, ``torch.compile``d where possible,
wrapped in DistributedDataParallel across processes)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from ..errors import InputError
from ..logs import log
from ..runtime import pick_device


@dataclass
class Distributed:
    """Rank and world size of this process (rank 0 of 1 without ``torchrun``)."""

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


def training_device(requested: str, batch_size: int, ranks: Distributed) -> torch.device:
    """This process's device: ``requested`` (``auto``: CUDA, MPS, CPU) alone, or one GPU per rank under torchrun,
    where the global ``batch_size`` must divide among the processes."""
    if ranks.world == 1:
        return pick_device(requested)
    if batch_size % ranks.world:
        raise InputError(f"optim.batch_size ({batch_size}) must divide by the number of processes ({ranks.world})")
    use_cuda = torch.cuda.is_available() and requested in ("auto", "cuda")
    return torch.device(f"cuda:{ranks.local_rank}") if use_cuda else torch.device("cpu")


class StepNetwork:
    """The network as a training step calls it: ``torch.compile``d when asked (eager where the platform cannot
    compile, or once compiling fails), and under torchrun wrapped in DistributedDataParallel."""

    def __init__(self, model: torch.nn.Module, compile: bool, ranks: Distributed, device: torch.device):
        self.model = model
        self.forward = self._compiled() if compile else model
        if ranks.world > 1:
            self.forward = DistributedDataParallel(
                self.forward, device_ids=[device.index] if device.type == "cuda" else None
            )
        #: seconds the first compiled call took (compilation), 0 if nothing was compiled
        self.compile_seconds = 0.0

    def _compiled(self):
        try:
            return torch.compile(self.model)
        except Exception as error:  # pragma: no cover - depends on the platform's toolchain
            log.warning("torch.compile unavailable (%s); training in eager mode", error)
            return self.model

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.forward is self.model or isinstance(self.forward, DistributedDataParallel):
            return self.forward(inputs)
        try:
            started = time.perf_counter()
            output = self.forward(inputs)
            if self.compile_seconds == 0.0:
                self.compile_seconds = time.perf_counter() - started
            return output
        except Exception as error:  # pragma: no cover - compiler failures vary by platform
            log.warning("torch.compile failed (%s: %s); training in eager mode", type(error).__name__, error)
            self.forward = self.model
            return self.model(inputs)
