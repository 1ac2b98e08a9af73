"""Tile training vs the paper's patch sampling: wall-clock training time to reach the paper-protocol test MSE.

Same data (three simulated 1 mm subjects: train sim001, test sim003), same network (9 layers,
tissue masks, channels_last, the trainer's allocator tuning), same optimizer (Adam 1e-3).
Arms: the paper's protocol (overlapping 128/24 patch grid in random order, batch 32); tiles of
128 px with the same batch (tiles alone); mrsynth's fast setting (64 px tiles, batch 8); and
the paper's patches with batch 2 (the fast setting's pixels per step), which tells whether the
gain comes from the sampling or from the smaller step. Every 10 s of training (evaluation time
excluded) the test MSE is measured in eval mode after BatchNorm recalibration, on the same
128 paper-grid test patches. Curves are smoothed by a running mean over 3 evaluations. Goal:
the paper arm's smoothed MSE at the end of its budget; each arm's time is the first time its
smoothed MSE is at or below it. The paper's own stack: the paper arm's steps to the goal times
the Keras/TensorFlow step time measured in this run (`keras_comparison`'s child; needs
$MRSYNTH_KERAS_PYTHON), i.e. Keras is assumed to learn per step as the same network and
optimizer do in PyTorch.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

BUDGET_S, EVERY_S, SMOOTH = 240.0, 10.0, 3
ARMS = {  # name: (sampling, size, batch)
    "paper: patches 128/24, batch 32": ("patches", 128, 32),
    "tiles 128, batch 32": ("tiles", 128, 32),
    "mrsynth fast: tiles 64, batch 8": ("tiles", 64, 8),
    "patches 128/24, batch 2": ("patches", 128, 2),
}
PAPER = next(iter(ARMS))


def _smoothed(curve: list[dict]) -> list[float]:
    values = [point["mse"] for point in curve]
    return [statistics.fmean(values[max(0, i - SMOOTH + 1) : i + 1]) for i in range(len(values))]


def _arm(cache: Path, sampling: str, size: int, batch: int, goal: float | None) -> list[dict]:
    """Train until the budget is spent (or the smoothed test MSE reaches ``goal``); the curve."""
    import torch
    import torch.nn.functional as F

    from mrsynth.data import batch_loader
    from mrsynth.networks import FCN, recalibrate_batchnorm
    from mrsynth.training import build_data, epoch_order, load_config, patch_losses

    config = load_config(
        None,
        [
            f"data.cache={cache}",
            "data.train=sim001",
            "data.test=sim003",
            f"data.sampling={sampling}",
            f"data.tile_size={size}",
            "seed=0",
        ],
    )
    data = build_data(config)
    torch.manual_seed(0)
    model = FCN(9, 9).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-9)
    calibration = epoch_order(len(data.train), 0, 0)[: 8 * 32]

    def batches():
        epoch = 0
        while True:
            epoch += 1
            yield from batch_loader(data.train, epoch_order(len(data.train), 0, epoch), batch)

    feed, curve, trained, steps = batches(), [], 0.0, 0
    while trained < BUDGET_S:
        started = time.perf_counter()
        inputs, target = next(feed)
        model.train()
        optimizer.zero_grad(set_to_none=True)
        F.mse_loss(model(inputs.contiguous(memory_format=torch.channels_last)), target).backward()
        optimizer.step()
        trained += time.perf_counter() - started
        steps += 1
        if trained >= EVERY_S * (len(curve) + 1):
            recalibrate_batchnorm(model, (x for x, _ in batch_loader(data.train, calibration, 32)), 8)
            mse = patch_losses(model, data.test, 32, "cpu", 128, 0)["mse"]
            curve.append({"seconds": trained, "steps": steps, "mse": mse})
            if goal is not None and _smoothed(curve)[-1] <= goal:
                break
    return curve


def _keras_step_s() -> float | None:
    python = os.environ.get("MRSYNTH_KERAS_PYTHON")
    if not python:
        return None
    from benchmarks.fixtures import keras_step

    return keras_step(python, {})["median_s"]


def run() -> dict:
    from mrsynth.data import prepare_all
    from mrsynth.io import discover
    from mrsynth.runtime import tune_allocator
    from mrsynth.simulate import simulate_dataset

    tune_allocator()  # as the trainer does
    work = Path(tempfile.mkdtemp(prefix="tiles-"))
    simulate_dataset(work / "data", 3, seed=0, progress=False)
    prepare_all(discover(work / "data"), work / "cache", progress=False)
    curves = {PAPER: _arm(work / "cache", *ARMS[PAPER], goal=None)}
    goal = _smoothed(curves[PAPER])[-1]
    for name, arm in ARMS.items():
        if name != PAPER:
            curves[name] = _arm(work / "cache", *arm, goal=goal)
    shutil.rmtree(work, ignore_errors=True)
    reach = {}
    for name, curve in curves.items():
        hit = next((i for i, value in enumerate(_smoothed(curve)) if value <= goal), None)
        reach[name] = None if hit is None else {"seconds": curve[hit]["seconds"], "steps": curve[hit]["steps"]}
    keras_step = _keras_step_s()
    keras_s = keras_step * reach[PAPER]["steps"] if keras_step else None
    return {
        "budget_s": BUDGET_S,
        "every_s": EVERY_S,
        "smooth": SMOOTH,
        "arms": {k: list(v) for k, v in ARMS.items()},
        "curves": curves,
        "goal_mse": goal,
        "reach": reach,
        "keras_step_s": keras_step,
        "keras_seconds_to_goal": keras_s,
    }


def markdown(result: dict) -> str:
    reach, keras_s = result["reach"], result["keras_seconds_to_goal"]
    paper_s = reach[PAPER]["seconds"]
    lines = [
        f"Goal: the paper arm's test MSE after {result['budget_s']:.0f} s of training, "
        f"{result['goal_mse']:.4f} (running mean of {result['smooth']} evaluations).",
        "",
        "| arm | seconds to goal | steps | patch-equivalents (128 px) | vs paper arm (mrsynth) | "
        "vs the paper's stack (Keras) |",
        "|---|---|---|---|---|---|",
    ]
    for name, (_, size, batch) in result["arms"].items():
        hit = reach[name]
        if hit is None:
            lines.append(f"| {name} | not reached in {result['budget_s']:.0f} s | | | | |")
            continue
        pixels = hit["steps"] * batch * size * size / 128**2
        versus_keras = f"{keras_s / hit['seconds']:.1f}x sooner" if keras_s else "needs MRSYNTH_KERAS_PYTHON"
        lines.append(
            f"| {name} | {hit['seconds']:.0f} | {hit['steps']} | {pixels:.0f} | "
            f"{paper_s / hit['seconds']:.1f}x sooner | {versus_keras} |"
        )
    if keras_s:
        lines += [
            "",
            f"The paper's stack: {reach[PAPER]['steps']} steps x {result['keras_step_s']:.2f} s "
            f"(Keras step, median, this run) = {keras_s:.0f} s to the goal.",
        ]
    lines += ["", "Curves (training seconds, test MSE):", ""]
    for name, curve in result["curves"].items():
        lines.append(f"- {name}: " + ", ".join(f"{p['seconds']:.0f} s {p['mse']:.4f}" for p in curve))
    lines += [
        "",
        "Target (issue): the paper-protocol test MSE >= 10x sooner than the paper's stack with patch sampling.",
    ]
    return "\n".join(lines)
