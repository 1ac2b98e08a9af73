"""The allocator tuning: the network's large activation buffers are reused, not mapped and faulted in anew."""

import json
import os
import subprocess
import sys

import pytest

CHILD = """
import json, resource
from mrsynth.runtime import tune_allocator
applied = tune_allocator()
import torch
from mrsynth.networks import FCN
model = FCN(4, 9, 32).eval()
x = torch.randn(2, 9, 260, 311)  # activations of 21 MB per layer
def faults(n):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    with torch.no_grad():
        for _ in range(n):
            model(x)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults(2)
print(json.dumps({"applied": applied, "faults": faults(5)}))
"""


def _child(tune: str) -> dict:
    env = dict(os.environ, MRSYNTH_TUNE_MALLOC=tune)
    out = subprocess.run([sys.executable, "-c", CHILD], check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning is Linux-only")
def test_tuned_allocator_stops_page_faulting_every_activation():
    tuned, default = _child("1"), _child("0")
    assert tuned["applied"] and not default["applied"]
    pages_per_activation = 2 * 32 * 260 * 311 * 4 // 4096
    # Default glibc: each layer's output is mmapped and faulted in, every forward pass.
    assert default["faults"] > 5 * pages_per_activation
    # Tuned: the freed buffers are reused from the heap, already resident.
    assert tuned["faults"] < default["faults"] / 5
