"""Tile training vs the paper's patch sampling: wall-clock training time to reach the same test MSE.

Same data (three simulated 1 mm subjects: train sim001, test sim003), same network (9 layers,
tissue masks, channels_last), same optimizer (Adam 1e-3), same batch (32 images of 128 x 128).
Patch arm: the paper's overlapping 128/24 grid in random order. Tile arm: 128 x 128 tiles that
cover each slice about once, in random order. Both train for the same number of steps; every
8 steps the test MSE is measured (eval mode after BatchNorm recalibration, on the same 128
paper-grid test patches; evaluation time excluded). Result: the training seconds each arm
needs to first reach the patch arm's final test MSE.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

STEPS, EVERY, BATCH = 64, 8, 32


def _arm(cache: Path, sampling: str) -> list[tuple[float, float]]:
    import torch
    import torch.nn.functional as F

    from mrsynth.config import load_config
    from mrsynth.models import FCN, recalibrate_batchnorm
    from mrsynth.patches import batch_loader
    from mrsynth.train import build_data, epoch_order, patch_losses

    config = load_config(None, [f"data.cache={cache}", "data.train=sim001", "data.test=sim003",
                                f"data.sampling={sampling}", "data.tile_size=128", "seed=0"])
    data = build_data(config)
    torch.manual_seed(0)
    model = FCN(9, 9).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-9)
    order = []
    epoch = 0
    while len(order) < STEPS * BATCH:
        epoch += 1
        order += epoch_order(len(data.train), 0, epoch)
    loader = iter(batch_loader(data.train, order[: STEPS * BATCH], BATCH))
    curve, trained = [], 0.0
    for step in range(1, STEPS + 1):
        started = time.perf_counter()
        inputs, target = next(loader)
        model.train()
        optimizer.zero_grad(set_to_none=True)
        F.mse_loss(model(inputs.contiguous(memory_format=torch.channels_last)), target).backward()
        optimizer.step()
        trained += time.perf_counter() - started
        if step % EVERY == 0:
            calibration = batch_loader(data.train, epoch_order(len(data.train), 0, 0)[: 4 * BATCH], BATCH)
            recalibrate_batchnorm(model, (x for x, _ in calibration), 4)
            curve.append((trained, patch_losses(model, data.test, BATCH, "cpu", 128, 0)["mse"]))
    return curve


def run() -> dict:
    from mrsynth.cache import prepare_all
    from mrsynth.simulate import simulate_dataset
    from mrsynth.subjects import discover

    work = Path(tempfile.mkdtemp(prefix="tiles-"))
    simulate_dataset(work / "data", 3, seed=0, progress=False)
    prepare_all(discover(work / "data"), work / "cache", progress=False)
    curves = {arm: _arm(work / "cache", arm) for arm in ("patches", "tiles")}
    shutil.rmtree(work, ignore_errors=True)
    goal = curves["patches"][-1][1]
    reach = {arm: next((t for t, mse in curve if mse <= goal), None) for arm, curve in curves.items()}
    return {"steps": STEPS, "batch": BATCH, "curves": curves, "goal_mse": goal, "seconds_to_goal": reach}


def markdown(result: dict) -> str:
    lines = ["| training s (patches) | test MSE (patches) | training s (tiles) | test MSE (tiles) |", "|---|---|---|---|"]
    for (tp, mp), (tt, mt) in zip(result["curves"]["patches"], result["curves"]["tiles"]):
        lines.append(f"| {tp:.0f} | {mp:.4f} | {tt:.0f} | {mt:.4f} |")
    reach = result["seconds_to_goal"]
    ratio = (f"{reach['patches'] / reach['tiles']:.2f}x sooner with tiles" if reach["tiles"] else
             "tiles did not reach it within the same number of steps")
    lines += ["", f"Goal: the patch arm's final test MSE {result['goal_mse']:.4f}. Reached after "
              f"{reach['patches']:.0f} s with patches; {ratio}" +
              (f" ({reach['tiles']:.0f} s)." if reach["tiles"] else ".") +
              f" {result['steps']} steps of batch {result['batch']} per arm. Target (issue): >= 10x sooner than the "
              "paper's stack with patch sampling; with the Keras step ratio from `keras_comparison`, the combined "
              "figure is that ratio times this one."]
    return "\n".join(lines)
