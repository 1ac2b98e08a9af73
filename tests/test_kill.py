"""Fault suite: kill -9 at random points of prepare (--jobs 2), train, pretrain and predict (a trained model's and
the shipped model's zero-shot), and SIGTERM at random points of pretrain and predict, then run again.

Every output must be complete or absent, the next run must remove the leftovers and finish, and a
resumed training or pretraining run must end with the same weights as an uninterrupted one. A short tier (2 kill
points per command, one SIGTERM of a zero-shot prediction) runs in the quick loop; the long tier (20 kill points per
command, 10 of each signal for pretrain and zero-shot predict) is `slow` and `long`: `make test-long`, not `make test`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import TINY, record, write_dataset, write_label_map
from safetensors.torch import load_file

from mrsynth.data import PreparedSubject

MRSYNTH = [sys.executable, "-m", "mrsynth"]


def _killed(command: list, delay: float, how: int = signal.SIGKILL) -> int | None:
    """Run ``command``, send it ``how`` (the parent only) after ``delay`` seconds unless it finished; its exit code."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return process.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        process.send_signal(how)
        return process.wait()


def _ok(command: list) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*")) if folder.exists() else []


def _delays(count: int, low: float, high: float, seed: int) -> list[float]:
    return sorted(np.random.default_rng(seed).uniform(low, high, count).round(2).tolist())


def _children_of(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _prepare_points(tmp_path: Path, delays: list[float]) -> None:
    root = write_dataset(tmp_path / "data", 4, "hcp", shape=(40, 48, 36))
    cache = tmp_path / "cache"
    for delay in delays:
        process = subprocess.Popen(
            MRSYNTH + ["prepare", str(root), "--out", str(cache), "--jobs", "2", "--force"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        workers = _children_of(process.pid)
        process.send_signal(signal.SIGKILL)
        process.wait()
        deadline = time.time() + 10
        while (
            any(
                Path(f"/proc/{w}").exists() and "zombie" not in Path(f"/proc/{w}/status").read_text().lower()
                for w in workers
            )
            and time.time() < deadline
        ):
            time.sleep(0.1)
        assert time.time() < deadline, f"prepare workers outlived their killed parent (delay {delay})"
        for folder in cache.glob("[!.]*") if cache.exists() else []:
            PreparedSubject.open(folder)  # complete, or it would not be there
        record("kill -9: prepare --jobs 2", "kills (every subject folder whole or absent, workers gone)")
    _ok(MRSYNTH + ["prepare", str(root), "--out", str(cache)])
    assert _hidden(cache) == [] and len(list(cache.glob("[!.]*"))) == 4
    record("kill -9: prepare --jobs 2", "reruns that completed with no leftovers")


def _train_points(tmp_path: Path, delays: list[float]) -> None:
    root = write_dataset(tmp_path / "data", 3, "hcp", shape=(40, 48, 36))
    _ok(MRSYNTH + ["prepare", str(root), "--out", str(tmp_path / "cache")])
    settings = sum((["--set", s] for s in TINY + ["optim.epochs=4"]), [])
    base = ["train", "--cache", str(tmp_path / "cache"), "--train", "001", "--val", "002", "--test", "003"]
    _ok(MRSYNTH + base + ["--out", str(tmp_path / "straight")] + settings)
    expected = load_file(str(tmp_path / "straight" / "model" / "model.safetensors"))
    for n, delay in enumerate(delays):
        run = tmp_path / f"run{n}"
        _killed(MRSYNTH + base + ["--out", str(run)] + settings, delay)
        if (run / "model" / "model.json").exists():
            record("kill -9: train", "finished before the kill")
        elif (run / "checkpoint.pt").exists():
            _ok(MRSYNTH + ["train", "--resume", str(run)])
            record("kill -9: train", "resumed from a checkpoint, weights bit-identical")
        else:  # killed before the first checkpoint: nothing to resume, start again in the same folder
            _ok(MRSYNTH + base + ["--out", str(run)] + settings)
            record("kill -9: train", "killed before the first checkpoint, restarted, weights bit-identical")
        weights = load_file(str(run / "model" / "model.safetensors"))
        assert all(torch.equal(weights[k], expected[k]) for k in expected), f"not exact after a kill at {delay} s"
        assert _hidden(run) == []


def _predict_points(tmp_path: Path, delays: list[float], trained) -> None:
    run, _, cache = trained
    out = tmp_path / "pred" / "p.nii.gz"
    command = MRSYNTH + ["predict", "--model", str(run / "model"), "--subject", str(cache / "001"), "--out", str(out)]
    for delay in delays:
        out.unlink(missing_ok=True)
        _killed(command, delay)
        if out.exists():
            assert np.isfinite(nib.load(str(out)).get_fdata()).all()  # complete
        record("kill -9: predict", "output whole" if out.exists() else "output absent")
    _ok(command)
    assert _hidden(out.parent) == [] and nib.load(str(out)).shape == (40, 48, 36)


#: A pretraining of seconds (the synthesis recipe on a tiny network), checkpointed every 20 steps.
TINY_PRETRAIN = ["batch=2", "crop=32", "features=4,4,8,8,8,4", "pool=2", "subject_every=40", "workers=0"]
TINY_PRETRAIN += ["checkpoint_every=20", "map_indices=1"]


def _pretrain_points(tmp_path: Path, delays: list[float], how: int) -> None:
    write_label_map(tmp_path / "maps")
    name = signal.Signals(how).name
    command = lambda out: MRSYNTH + [  # noqa: E731
        "pretrain", str(out), "--maps", str(tmp_path / "maps"), "--steps", "90", "--lesion-steps", "30", "--device",
        "cpu", *sum((["--set", s] for s in TINY_PRETRAIN), []),
    ]  # fmt: skip
    _ok(command(tmp_path / "straight"))
    expected = load_file(str(tmp_path / "straight" / "model" / "model.safetensors"))
    for n, delay in enumerate(delays):
        run = tmp_path / f"run{n}"
        code = _killed(command(run), delay, how)
        if (run / "model" / "model.json").exists():
            record(f"{name}: pretrain", "finished before the signal")
        elif (run / "checkpoint.pt").exists():
            if how == signal.SIGTERM:
                assert code == 128 + how, code  # ended as asked, its checkpoint written first
            _ok(command(run) + ["--resume"])
            record(f"{name}: pretrain", "resumed from its checkpoint, weights bit-identical")
        else:  # stopped before its first step: nothing to resume, start again in the same folder
            _ok(command(run))
            record(f"{name}: pretrain", "stopped before its first step, restarted, weights bit-identical")
        weights = load_file(str(run / "model" / "model.safetensors"))
        assert all(torch.equal(weights[k], expected[k]) for k in expected), f"not exact after {name} at {delay} s"
        assert _hidden(run) == []


def _zero_shot_points(tmp_path: Path, delays: list[float], how: int) -> None:
    """The shipped model, zero-shot, its brain mask computed: whole or absent after a signal."""
    from mrsynth.io.fixtures import make_subject, save_nifti

    subject = make_subject(shape=(40, 48, 36), voxel_size=1.3)
    t1 = save_nifti(subject.t1.astype(np.float32), subject.affine, tmp_path / "t1.nii.gz")
    out = tmp_path / "pred" / "p.nii.gz"
    command = MRSYNTH + ["predict", "--t1", str(t1), "--out", str(out)]
    name = signal.Signals(how).name
    for delay in delays:
        out.unlink(missing_ok=True)
        _killed(command, delay, how)
        if out.exists():
            assert np.isfinite(nib.load(str(out)).get_fdata()).all()  # complete
        record(f"{name}: predict zero-shot", "output whole" if out.exists() else "output absent")
    _ok(command)
    assert _hidden(out.parent) == [] and nib.load(str(out)).shape == (40, 48, 36)


def test_kill_prepare_short(tmp_path):
    _prepare_points(tmp_path, _delays(2, 1.0, 4.0, seed=1))


def test_kill_train_short(tmp_path):
    _train_points(tmp_path, _delays(1, 3.0, 12.0, seed=2))  # more kill points: the long tier


def test_kill_predict_short(tmp_path, trained):
    _predict_points(tmp_path, _delays(2, 1.0, 4.0, seed=3), trained)


def test_signal_zero_shot_predict_short(tmp_path):
    _zero_shot_points(tmp_path, _delays(1, 2.0, 5.0, seed=5), signal.SIGTERM)  # pretrain: test_hostile_user


@pytest.mark.slow
@pytest.mark.long
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_signal_pretrain_long(tmp_path, how):
    _pretrain_points(tmp_path, _delays(10, 3.0, 14.0, seed=14 + how), how)


@pytest.mark.slow
@pytest.mark.long
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_signal_zero_shot_predict_long(tmp_path, how):
    _zero_shot_points(tmp_path, _delays(10, 1.0, 8.0, seed=15 + how), how)


@pytest.mark.slow
@pytest.mark.long
def test_kill_prepare_long(tmp_path):
    _prepare_points(tmp_path, _delays(20, 0.5, 6.0, seed=11))


@pytest.mark.slow
@pytest.mark.long
def test_kill_train_long(tmp_path):
    _train_points(tmp_path, _delays(20, 2.0, 16.0, seed=12))


@pytest.mark.slow
@pytest.mark.long
def test_kill_predict_long(tmp_path, trained):
    _predict_points(tmp_path, _delays(20, 0.5, 5.0, seed=13), trained)


def _limited(limit_bytes: int):
    import resource

    def apply() -> None:  # Python ignores SIGXFSZ: a write beyond the limit fails with EFBIG, as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return apply


def test_a_full_disk_is_a_clean_error_for_prepare_train_and_predict(tmp_path, trained):
    root = write_dataset(tmp_path / "data", 1, "hcp", shape=(40, 48, 36))
    run, _, cache = trained
    settings = sum((["--set", s] for s in TINY + ["optim.epochs=1"]), [])
    commands = {
        "prepare": (MRSYNTH + ["prepare", str(root), "--out", str(tmp_path / "cache")], tmp_path / "cache" / "001"),
        "train": (
            MRSYNTH
            + ["train", "--cache", str(cache), "--train", "001", "--test", "003", "--out", str(tmp_path / "run")]
            + settings,
            tmp_path / "run" / "model" / "model.json",
        ),
        "predict": (
            MRSYNTH
            + [
                "predict",
                "--model",
                str(run / "model"),
                "--subject",
                str(cache / "001"),
                "--out",
                str(tmp_path / "p.nii.gz"),
            ],
            tmp_path / "p.nii.gz",
        ),
    }
    for name, (command, output) in commands.items():
        result = subprocess.run(command, capture_output=True, text=True, preexec_fn=_limited(20_000))
        assert result.returncode == 2, (name, result.returncode, result.stderr[-1500:])
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) <= 3, (name, result.stderr)
        named = {"prepare": tmp_path / "cache", "train": tmp_path / "run", "predict": output}[name]
        assert str(named) in result.stderr, (name, result.stderr)  # the message names where it could not write
        assert not output.exists(), name
        record("full disk (RLIMIT_FSIZE)", f"{name}: one-line error naming the place, exit 2, nothing partial")
    assert [p for p in tmp_path.rglob(".*") if ".tmp" in p.name or ".old" in p.name] == []


@contextlib.contextmanager
def _read_only(folder: Path):
    """``folder`` made unwritable: by its mode for a user, by the immutable attribute for root (who ignores modes)."""
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o500)
        undo = lambda: folder.chmod(0o700)
    else:
        if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
            pytest.skip("running as root without chattr +i support: cannot make a folder read-only for root")
        undo = lambda: subprocess.run(["chattr", "-i", str(folder)], check=True)
    try:
        yield folder
    finally:
        undo()


def test_a_read_only_output_folder_is_a_clean_error_for_prepare_train_and_predict(tmp_path, trained):
    root = write_dataset(tmp_path / "data", 1, "hcp", shape=(40, 48, 36))
    run, _, cache = trained
    settings = sum((["--set", s] for s in TINY + ["optim.epochs=1"]), [])
    with _read_only(tmp_path / "locked") as locked:
        commands = {
            "prepare": MRSYNTH + ["prepare", str(root), "--out", str(locked / "cache")],
            "train": MRSYNTH
            + ["train", "--cache", str(cache), "--train", "001", "--test", "003", "--out", str(locked / "run")]
            + settings,
            "predict": MRSYNTH
            + [
                "predict",
                "--model",
                str(run / "model"),
                "--subject",
                str(cache / "001"),
                "--out",
                str(locked / "p.nii.gz"),
            ],
        }
        for name, command in commands.items():
            result = subprocess.run(command, capture_output=True, text=True)
            assert result.returncode == 2 and "Traceback" not in result.stderr, (name, result.stderr[-1500:])
            assert str(locked) in result.stderr, (name, result.stderr)
            assert list(locked.iterdir()) == [], name
            record("read-only output folder", f"{name}: one-line error naming the folder, exit 2, nothing written")


def test_two_concurrent_prepares_into_one_cache_end_consistent(tmp_path):
    root = write_dataset(tmp_path / "data", 4, "hcp", shape=(40, 48, 36))
    command = MRSYNTH + ["prepare", str(root), "--out", str(tmp_path / "cache"), "--force"]
    processes = [
        subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    for process in processes:
        assert process.wait() == 0, process.stderr.read()[-1500:]
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["001", "002", "003", "004"]
    for folder in (tmp_path / "cache").iterdir():
        PreparedSubject.open(folder)
    record("concurrency", "two prepares into one cache, every subject whole")
