"""The allocator tuning: large freed blocks stay in the heap and are reused, not mapped and faulted in anew.

Measured with plain ``malloc``/``free`` of one 64 MiB block (one layer's activations for a
training batch of 32 patches) in a fresh single-threaded process, so the outcome is
deterministic: untuned glibc serves every block above its 32 MiB dynamic-threshold ceiling with
a fresh ``mmap`` (``mallinfo2().hblkhd`` counts it) and faults its pages in on every use; tuned,
the block comes from the heap and is reused.  Fault counts are compared, not bounded, since
transparent huge pages (``always`` on some hosts) change how many faults a mapping takes.  The speed this buys for the
whole network is a benchmark's job (`prediction`, `training_step` in benchmarks/RESULTS.md).
"""

import ctypes
import ctypes.util
import json
import os
import subprocess
import sys

import pytest

BLOCK = 64 << 20
CYCLES = 5

CHILD = f"""
import ctypes, ctypes.util, json, resource
from mrsynth.runtime import tune_allocator
applied = tune_allocator()
libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc.mallinfo2.restype = Mallinfo2
def cycle():
    global mapped
    already = libc.mallinfo2().hblkhd
    block = libc.malloc({BLOCK})
    mapped = libc.mallinfo2().hblkhd - already
    ctypes.memset(block, 1, {BLOCK})  # touch every page, as a layer writing its output does
    libc.free(block)
cycle()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range({CYCLES}):
    cycle()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({{"applied": applied, "mapped": mapped, "faults": faults}}))
"""


def _child(tune: str) -> dict:
    env = dict(os.environ, MRSYNTH_TUNE_MALLOC=tune)
    out = subprocess.run([sys.executable, "-c", CHILD], check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _has_mallinfo2() -> bool:
    try:
        return hasattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), "mallinfo2")
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning is Linux-only")
@pytest.mark.skipif(not _has_mallinfo2(), reason="needs glibc >= 2.33 (mallinfo2) to see where a block lives")
def test_tuned_allocator_reuses_large_blocks_instead_of_faulting_them_in():
    tuned, default = _child("1"), _child("0")
    assert tuned["applied"] and not default["applied"]
    # Untuned: the block is a fresh mapping every cycle, faulted in anew.
    assert default["mapped"] >= BLOCK
    assert default["faults"] >= CYCLES
    # Tuned: the block lives in the heap and stays resident between uses.
    assert tuned["mapped"] == 0
    assert tuned["faults"] < default["faults"] / 10
