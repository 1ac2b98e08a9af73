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
