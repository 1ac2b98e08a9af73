"""The paper's own stack side by side: the same network and training step in Keras 3 / TensorFlow, fed by a Python
patch generator.

Keras: Sequential of 8 x [Conv2D(32, 3x3, same) -> BatchNormalization(momentum 0.99,
epsilon 1e-3) -> ReLU] + Conv2D(1, 3x3), NHWC input 128 x 128 x 9, Adam(lr 1e-3, eps 1e-9),
MSE, batch 32, `train_on_batch` on batches a Python generator cuts from an in-memory
volume (the paper's section 4.3). Ours: the same step in PyTorch (channels_last, eager and
compiled) on tensors in memory, each in its own process. All measured in this run, one
after the other, each with 2 threads; Keras also with the allocator tuning mrsynth applies to
itself, set through glibc's environment variables, for a like-for-like ratio. TensorFlow is a benchmark-only
dependency, never one of the package: the
benchmark uses the interpreter in $MRSYNTH_KERAS_PYTHON (a virtual environment with
`pip install tensorflow`) and is skipped without it.
"""

from __future__ import annotations

import os

from benchmarks.fixtures import Skipped, keras_step
from benchmarks.perf.training_step import BATCH, measure_in_child

GLIBC_TUNED = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}
OURS = {"mrsynth trainer default (channels_last, tuned allocator)": False, "mrsynth + torch.compile": True}


def run() -> dict:
    python = os.environ.get("MRSYNTH_KERAS_PYTHON")
    if not python:
        raise Skipped("set MRSYNTH_KERAS_PYTHON to a Python with tensorflow installed")
    result = {"keras": keras_step(python, {}), "keras, tuned allocator": keras_step(python, GLIBC_TUNED)}
    for name, compiled in OURS.items():
        result[name] = measure_in_child(channels_last=True, compile_model=compiled, tuned=True)
    for entry in result.values():
        entry["patches_per_s"] = BATCH / entry["median_s"]
    return result


def markdown(result: dict) -> str:
    keras, tuned = result["keras"], result["keras, tuned allocator"]
    stack = f"Keras {keras['versions']['keras']} / TF {keras['versions']['tensorflow']}"
    labels = {"keras": stack, "keras, tuned allocator": stack + " with the same glibc tuning (environment)"}
    lines = [
        "| stack | patches/s (median) | min-max step s | ratio to Keras | ratio to tuned Keras |",
        "|---|---|---|---|---|",
    ]
    for name in ("keras", "keras, tuned allocator", *OURS):
        entry = result[name]
        lines.append(
            f"| {labels.get(name, name)} | {entry['patches_per_s']:.1f} | {entry['min_s']:.2f}-{entry['max_s']:.2f} | "
            f"{entry['patches_per_s'] / keras['patches_per_s']:.2f}x | "
            f"{entry['patches_per_s'] / tuned['patches_per_s']:.2f}x |"
        )
    lines += [
        "",
        "Target: the mrsynth step >= 2.0x the Keras step in the same run. The first ratio is against "
        "Keras as it runs out of the box; the second gives TensorFlow the same allocator setting "
        "(MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ = 1 GiB).",
    ]
    return "\n".join(lines)
