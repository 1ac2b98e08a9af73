"""The paper's own stack side by side: the same network and training step in Keras 3 / TensorFlow, fed by a Python patch generator.

Keras: Sequential of 8 x [Conv2D(32, 3x3, same) -> BatchNormalization(momentum 0.99,
epsilon 1e-3) -> ReLU] + Conv2D(1, 3x3), NHWC input 128 x 128 x 9, Adam(lr 1e-3, eps 1e-9),
MSE, batch 32, `train_on_batch` on batches a Python generator cuts from an in-memory
volume (the paper's section 4.3). Ours: the same step in PyTorch (channels_last, eager and
compiled) on tensors in memory. Both measured in this run, one after the other, each with
2 threads. TensorFlow is a benchmark-only dependency, never one of the package: the
benchmark uses the interpreter in $MRSYNTH_KERAS_PYTHON (a virtual environment with
`pip install tensorflow`) and is skipped without it.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import textwrap

from .common import repeat
from .training_step import BATCH, _step_timer

KERAS_CHILD = textwrap.dedent("""
    import json, os, statistics, sys, time
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras
    from keras import layers
    blocks = [keras.Input((128, 128, 9))]
    for _ in range(8):
        blocks += [layers.Conv2D(32, 3, padding="same"), layers.BatchNormalization(momentum=0.99, epsilon=1e-3),
                   layers.ReLU()]
    blocks.append(layers.Conv2D(1, 3, padding="same"))
    model = keras.Sequential(blocks)
    model.compile(optimizer=keras.optimizers.Adam(1e-3, epsilon=1e-9), loss="mse")
    rng = np.random.default_rng(0)
    volume = rng.standard_normal((40, 260, 311, 10)).astype(np.float32)
    def patches(batch=32):  # a Python generator cutting random patches, as in the paper
        while True:
            s = rng.integers(0, 40, batch); r = rng.integers(0, 260 - 128, batch); c = rng.integers(0, 311 - 128, batch)
            cut = np.stack([volume[a, b:b + 128, d:d + 128] for a, b, d in zip(s, r, c)])
            yield cut[..., :9], cut[..., 9:]
    feed = patches()
    for _ in range(2):
        model.train_on_batch(*next(feed))
    times = []
    for _ in range(7):
        start = time.perf_counter(); model.train_on_batch(*next(feed)); times.append(time.perf_counter() - start)
    print(json.dumps({"step_s": times, "tensorflow": tf.__version__, "keras": keras.__version__}))
""")


def run() -> dict:
    python = os.environ.get("MRSYNTH_KERAS_PYTHON")
    if not python:
        raise SystemExit("skipped: set MRSYNTH_KERAS_PYTHON to a Python with tensorflow installed")
    env = dict(os.environ, OMP_NUM_THREADS="2")
    out = subprocess.run([python, "-c", KERAS_CHILD], check=True, capture_output=True, text=True, env=env)
    keras = json.loads(out.stdout.strip().splitlines()[-1])
    result = {"keras": {"median_s": statistics.median(keras["step_s"]), "min_s": min(keras["step_s"]),
                        "max_s": max(keras["step_s"]), "versions": {k: keras[k] for k in ("tensorflow", "keras")}}}
    for name, compiled in (("mrsynth channels_last", False), ("mrsynth channels_last + compile", True)):
        step = _step_timer(channels_last=True, compile_model=compiled)
        result[name] = repeat(step, runs=7, warmup=2)
    for entry in result.values():
        entry["patches_per_s"] = BATCH / entry["median_s"]
    return result


def markdown(result: dict) -> str:
    keras = result["keras"]
    lines = ["| stack | patches/s (median) | min-max step s | ratio to Keras |", "|---|---|---|---|"]
    for name in ("keras", "mrsynth channels_last", "mrsynth channels_last + compile"):
        entry = result[name]
        lines.append(f"| {'Keras ' + keras['versions']['keras'] + ' / TF ' + keras['versions']['tensorflow'] if name == 'keras' else name} | "
                     f"{entry['patches_per_s']:.1f} | {entry['min_s']:.2f}-{entry['max_s']:.2f} | "
                     f"{entry['patches_per_s'] / keras['patches_per_s']:.2f}x |")
    lines += ["", "Target: the mrsynth step >= 2.0x the Keras step in the same run."]
    return "\n".join(lines)
