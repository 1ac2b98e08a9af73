"""torchrun / DistributedDataParallel on the CPU (gloo): two processes train like one."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from mrsynth.training import runs

BASE = [
    "data.patch_size=16",
    "data.stride=8",
    "data.channels=9",
    "model.layers=4",
    "optim.batch_size=16",
    "optim.lr=0.003",
    "val_recalibration_batches=2",
    "bn_recalibration_batches=4",
    "data.max_patches_per_epoch=128",
    "data.max_eval_patches=64",
    "optim.epochs=2",
]


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")
def test_torchrun_two_processes_match_one_process(cache, tmp_path):
    args = ["train", "--cache", str(cache), "--train", "001,002", "--test", "003", "--quiet", "--device", "cpu"]
    args += sum((["--set", s] for s in BASE), [])
    env = dict(os.environ, OMP_NUM_THREADS="1")
    two = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_port=29533",
            "-m",
            "mrsynth",
            *args,
            "--out",
            str(tmp_path / "ddp"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    one = subprocess.run(
        [sys.executable, "-m", "mrsynth", *args, "--out", str(tmp_path / "single")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir() if p.suffix in (".pt", ".tmp")) == [runs.CHECKPOINT]
    ddp, single = runs.read_summary(tmp_path / "ddp"), runs.read_summary(tmp_path / "single")
    assert ddp["epochs"] == single["epochs"] == 2
    assert len(runs.read_history(tmp_path / "ddp")) == 2  # one row per epoch, written once (rank 0)
    # same global batch and patch order; only BatchNorm sees half-batches per process
    assert ddp["test_loss"] == pytest.approx(single["test_loss"], rel=0.25)


TINY_PRETRAIN = ["--steps", "4", "--lesion-steps", "0", "--workers", "0", "--device", "cpu", "--quiet"]
TINY_PRETRAIN += sum((["--set", s] for s in ("batch=4", "crop=32", "features=4,4,8,8,8,4", "checkpoint_every=2")), [])


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")
def test_pretraining_under_torchrun_two_processes_matches_one_process(tmp_path):
    """The synthesis recipe on the one training loop under torchrun: each process takes half of every batch."""
    from conftest import write_label_map

    from mrsynth.networks import load_model
    from mrsynth.training.pretrain import CHECKPOINT, LOG

    write_label_map(tmp_path / "maps")
    args = ["pretrain", "--maps", str(tmp_path / "maps"), "--set", "map_indices=1", *TINY_PRETRAIN]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    runs_by = {
        "ddp": [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29534"],
        "single": [sys.executable],
    }
    for name, launcher in runs_by.items():
        done = subprocess.run(
            [*launcher, "-m", "mrsynth", *args[:1], str(tmp_path / name), *args[1:]],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir() if p.suffix in (".pt", ".tmp")) == [CHECKPOINT]
    lines = (tmp_path / "ddp" / LOG).read_text().splitlines()
    assert len(lines) == 1 and "step 4/4" in lines[0]  # written once (rank 0), at the end of the phase
    loss = {name: float((tmp_path / name / LOG).read_text().split("loss ")[1].split(",")[0]) for name in runs_by}
    assert loss["ddp"] == pytest.approx(loss["single"], rel=0.25)  # the same global batches, split in two
    (ddp, info), (single, _) = load_model(tmp_path / "ddp" / "model"), load_model(tmp_path / "single" / "model")
    assert info.spec.grid_mm == 1.0 and ddp.state_dict().keys() == single.state_dict().keys()
