"""Messages and progress bars (mrsynth.logs): readable logs off a terminal, the same options on every command."""

from __future__ import annotations

import re

from conftest import TINY, write_dataset

from mrsynth.logs import bars_wanted


def _train(run_cli, cache, out, *options):
    settings = sum((["--set", s] for s in TINY), [])
    return run_cli(
        "train", "--cache", cache, "--train", "001", "--test", "003", "--out", out, "--epochs", "2", *options, *settings
    )


def test_off_a_terminal_training_logs_one_line_per_epoch_and_no_bars(cache, tmp_path, run_cli):
    code, _, err = _train(run_cli, cache, tmp_path / "r")
    assert code == 0, err
    assert "\r" not in err and "%|" not in err  # no tqdm redraws
    epochs = [line for line in err.splitlines() if line.startswith("epoch ")]
    assert len(epochs) == 2 and re.match(
        r"epoch 1/2: train [\d.e-]+, lr [\d.e-]+, [\d.]+ s, [\d.]+ patches/s$", epochs[0]
    )


def test_quiet_verbose_and_progress_behave_the_same_on_every_command(cache, tmp_path, run_cli):
    code, _, err = _train(run_cli, cache, tmp_path / "quiet", "--quiet")
    assert code == 0 and err == ""
    code, _, err = _train(run_cli, cache, tmp_path / "bars", "--progress")
    assert code == 0 and "%|" in err
    root = write_dataset(tmp_path / "data", 1, "hcp")
    code, _, err = run_cli("prepare", root, "--out", tmp_path / "cache", "--verbose")
    assert code == 0 and "DEBUG" in err and "prepare 001: prepared" in err
    code, _, err = run_cli("prepare", root, "--out", tmp_path / "cache", "--quiet")
    assert code == 0 and err == ""
    code, _, err = run_cli("prepare", root, "--out", tmp_path / "cache")
    assert code == 0 and "DEBUG" not in err and "prepare 001: up-to-date" in err


def test_bars_only_on_a_terminal_unless_asked(monkeypatch):
    monkeypatch.delenv("MRSYNTH_PROGRESS", raising=False)
    assert not bars_wanted()  # pytest captures standard error: not a terminal
    monkeypatch.setenv("MRSYNTH_PROGRESS", "1")
    assert bars_wanted() and not bars_wanted(allowed=False)
