"""Process-wide settings: the compute device, and the allocator tuning that makes CPU training and prediction fast.

The network's activations are large (one 260 x 311 slice x 32 channels is 10 MB; a batch
of 32 training patches, 64 MB per layer), and every layer allocates a fresh one and frees
its input.  glibc's malloc serves blocks that large with ``mmap`` and hands them back
with ``munmap`` on free, so each layer pays for mapping and page-faulting its output
anew.  Raising glibc's mmap and trim thresholds keeps those blocks in the heap, where the
next layer reuses them; PyTorch's CPU performance guide reaches the same end by preloading
jemalloc or tcmalloc.  The `prediction`, `training_step` and `epoch_loader` benchmarks
measure the setting on and off (benchmarks/RESULTS.md).

The cost: freed memory stays with the process, and a heap is less compact than fresh
mappings, so peak RSS rises (by a few hundred MB in training, measured by `epoch_loader`).
Set ``MRSYNTH_TUNE_MALLOC=0`` to leave the allocator alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

from .errors import InputError

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
THRESHOLD_BYTES = 1 << 30
FALLBACK_BYTES = 32 << 20  # some glibc releases refuse thresholds above HEAP_MAX_SIZE / 2 (32 MiB)
_applied: bool | None = None


def _other_allocator_preloaded() -> bool:
    preload = os.environ.get("LD_PRELOAD", "")
    return any(name in preload for name in ("jemalloc", "tcmalloc", "mimalloc"))


def tune_allocator() -> bool:
    """Raise glibc's mmap/trim thresholds once per process; True when in effect.

    A no-op (False) off Linux/glibc, when another allocator is preloaded, or with
    ``MRSYNTH_TUNE_MALLOC=0``.  Called by the trainer and the predictor once their data
    are loaded, so that loading's own large temporaries still go back to the system.
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("MRSYNTH_TUNE_MALLOC", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    if _other_allocator_preloaded():
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other libcs without mallopt
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    mmap_ok = mallopt(M_MMAP_THRESHOLD, THRESHOLD_BYTES) or mallopt(M_MMAP_THRESHOLD, FALLBACK_BYTES)
    trim_ok = mallopt(M_TRIM_THRESHOLD, THRESHOLD_BYTES)
    _applied = bool(mmap_ok and trim_ok)
    return _applied


class Device:
    """The check of a device setting: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``, one this machine has."""

    def problem(self, name) -> str | None:
        import torch

        kind, _, index = str(name).partition(":")
        if name in ("auto", "cpu"):
            return None
        if kind == "cuda" and (not index or index.isdigit()):
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if not count:
                return "must be auto or cpu here: this PyTorch sees no CUDA device (a CPU build, or no GPU)"
            return None if not index or int(index) < count else f"must be cuda:0 to cuda:{count - 1} here"
        if name == "mps":
            mps = getattr(torch.backends, "mps", None)
            return None if mps and mps.is_available() else "must be auto or cpu here: no Apple MPS device"
        return f"must be {self}"

    def __str__(self) -> str:
        return "auto, cpu, cuda, cuda:N or mps (one this machine has)"


def pick_device(requested: str = "auto"):
    """``auto``: CUDA, then Apple MPS, then CPU; otherwise the named device (a ``torch.device``), refused with an
    :class:`~mrsynth.errors.InputError` when this machine has no such device.

    torch is imported here, not at the top, so that :func:`tune_allocator` can run before
    torch's own start-up allocations.
    """
    import torch

    if requested != "auto":
        problem = Device().problem(requested)
        if problem:
            raise InputError(f"device = {requested!r}: {problem}")
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
