"""Speed and scale paths: tile sampling, the optimized training step, torchrun/DDP on CPU (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from mrsynth.cache import list_prepared
from mrsynth.config import load_config
from mrsynth.normalization import Normalization
from mrsynth.patches import PatchDataset, PatchGrid
from mrsynth.train import build_data, train

BASE = ["data.patch_size=16", "data.stride=8", "data.channels=9", "model.layers=4", "optim.batch_size=16",
        "optim.lr=0.003", "val_recalibration_batches=2", "bn_recalibration_batches=4",
        "data.max_patches_per_epoch=128", "data.max_eval_patches=64", "optim.epochs=2"]


def _covered(dataset: PatchDataset, part: int = 0) -> np.ndarray:
    subject = dataset.parts[part].subject
    hits = np.zeros(subject.stored_shape, int)
    size = dataset.grid.size
    for item in range(len(dataset)):
        position, s, r, c = dataset.locate(item)
        if position != part:
            continue
        r0, c0 = max(r, 0), max(c, 0)
        hits[s, r0:r + size, c0:c + size] += 1
    return hits


def test_tiles_and_patches_both_cover_every_brain_slice(cache):
    subject = list_prepared(cache)[0]
    brain = (np.asarray(subject.array("tissue")) & 1) == 1
    for grid in (PatchGrid(16, 8), PatchGrid.tiles(16)):
        hits = _covered(PatchDataset([subject], Normalization(), grid))
        slices_with_brain = brain.any(axis=(1, 2))
        assert (hits[slices_with_brain] > 0).any(axis=(1, 2)).all()
        if grid.cover:
            assert (hits > 0).all()  # tiles cover every pixel of every slice
            assert hits.mean() < 1.3  # ... about once
    # tile training uses far fewer, larger, non-overlapping items than the paper's grid
    assert PatchGrid.tiles(16).count(subject.stored_shape) < PatchGrid(16, 8).count(subject.stored_shape)


def test_tile_training_runs_and_refuses_within_subject_splits(cache, tmp_path):
    config = load_config(None, [f"data.cache={cache}", "data.train=001", "data.test=003", "data.sampling=tiles",
                                "data.tile_size=24"] + BASE)
    summary = train(config, tmp_path / "tiles", progress=False)
    assert np.isfinite(summary["test_loss"])
    within = load_config(None, [f"data.cache={cache}", "data.split=within", "data.sampling=tiles"] + BASE)
    from mrsynth.errors import InputError

    with pytest.raises(InputError, match="tile sampling needs an across-subject split"):
        build_data(within)


def test_channels_last_training_matches_the_plain_path(cache, tmp_path):
    common = [f"data.cache={cache}", "data.train=001", "data.test=003"] + BASE
    fast = train(load_config(None, common + ["channels_last=true"]), tmp_path / "fast", progress=False)
    plain = train(load_config(None, common + ["channels_last=false"]), tmp_path / "plain", progress=False)
    # float rounding differs between memory layouts and compounds over the steps of a run
    assert fast["test_loss"] == pytest.approx(plain["test_loss"], rel=0.05)


def test_one_training_step_is_the_same_in_both_memory_layouts():
    import torch.nn.functional as F

    from mrsynth.models import FCN

    results = []
    for layout in (torch.contiguous_format, torch.channels_last):
        torch.manual_seed(0)
        model = FCN(9, 9).to(memory_format=layout)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-9)
        x = torch.randn(8, 9, 32, 32, generator=torch.Generator().manual_seed(1)).contiguous(memory_format=layout)
        y = torch.randn(8, 1, 32, 32, generator=torch.Generator().manual_seed(2))
        loss = F.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        results.append((loss.item(), model(x).detach()))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-5)
    torch.testing.assert_close(results[0][1], results[1][1].contiguous(), rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")
def test_torchrun_two_processes_match_one_process(cache, tmp_path):
    args = ["train", "--cache", str(cache), "--train", "001,002", "--test", "003", "--quiet", "--device", "cpu"]
    args += sum((["--set", s] for s in BASE), [])
    env = dict(os.environ, OMP_NUM_THREADS="1")
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
                          "-m", "mrsynth", *args, "--out", str(tmp_path / "ddp")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    one = subprocess.run([sys.executable, "-m", "mrsynth", *args, "--out", str(tmp_path / "single")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir() if p.suffix in (".pt", ".tmp")) == ["checkpoint.pt"]
    ddp = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    single = json.loads((tmp_path / "single" / "summary.json").read_text())
    assert ddp["epochs"] == single["epochs"] == 2
    with (tmp_path / "ddp" / "history.csv").open() as handle:
        assert len(handle.readlines()) == 3  # header + one row per epoch, written once (rank 0)
    # same global batch and patch order; only BatchNorm sees half-batches per process
    assert ddp["test_loss"] == pytest.approx(single["test_loss"], rel=0.25)


def test_optimized_prediction_equals_the_plain_path(cache):
    from mrsynth.models import FCN, ModelInfo, recalibrate_batchnorm
    from mrsynth.predict import predict_slices

    torch.manual_seed(0)
    model = FCN(5, 9)
    recalibrate_batchnorm(model, [torch.randn(4, 9, 20, 20) for _ in range(2)])
    subject = list_prepared(cache)[0]
    info = ModelInfo(5, 9, 32, {"method": "robust", "t2_reference_scale": 2.0}, 16, 8, "axial")
    transform = info.norm().transform("t1", subject.stats)
    args = (model, info, subject.array("t1"), subject.array("tissue"), transform)
    fast, plain = predict_slices(*args, optimized=True), predict_slices(*args, optimized=False)
    np.testing.assert_allclose(fast, plain, rtol=1e-4, atol=1e-4)


def test_fast_preset_is_tile_training_with_small_steps_and_user_settings_win():
    config = load_config(None, ["optim.batch_size=4"], presets=["fast"])
    assert (config.data.sampling, config.data.tile_size, config.optim.batch_size) == ("tiles", 64, 4)
    assert load_config(None, [], presets=["fast"]).optim.batch_size == 8
