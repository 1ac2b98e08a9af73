"""Every command of the README's Usage block: its help, its documented flags, and a real run on fixture data."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nibabel as nib
import pytest
from conftest import TINY

from mrsynth import labels
from mrsynth.cli import build_parser
from mrsynth.io import HCP_FOLDER, HCP_NAMES

README = Path(__file__).resolve().parents[1] / "README.md"


def usage_lines() -> list[str]:
    """The ``mrsynth ...`` lines of the README's Usage code block."""
    text = README.read_text()
    block = re.search(r"## Usage\s+```sh\n(.*?)```", text, re.S).group(1)
    return [line for line in block.splitlines() if line.startswith("mrsynth ")]


def subparsers() -> dict:
    parser = build_parser()
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return action.choices


def test_readme_usage_lists_every_command_and_only_real_flags():
    commands = subparsers()
    documented = {line.split()[1] for line in usage_lines()}
    assert documented == set(commands) - {"fixtures", "demo"}, "README Usage and the CLI disagree"
    for line in usage_lines():
        options = {o for a in commands[line.split()[1]]._actions for o in a.option_strings}
        for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", line.split("#")[0]):
            assert flag in options, f"README documents {flag} for `{line.split()[1]}`, which does not take it"


@pytest.mark.parametrize("command", sorted(subparsers()))
def test_every_option_and_argument_of_every_command_has_a_help_text(command):
    import argparse

    silent = [
        a.option_strings or a.dest for a in subparsers()[command]._actions if not a.help or a.help == argparse.SUPPRESS
    ]
    assert not silent, f"{command}: no help for {silent}"


def test_shared_options_are_declared_once():
    """--masks, --set, --preset, --config and --seed come from one declaration each (parent parsers): the same
    help text wherever they appear."""
    helps: dict[str, set[str]] = {}
    for name, sub in subparsers().items():
        for action in sub._actions:
            for flag in set(action.option_strings) & {"--masks", "--set", "--preset", "--config"}:
                helps.setdefault(flag, set()).add(action.help)
            if "--seed" in action.option_strings and name != "train":  # train's --seed is a config field
                helps.setdefault("--seed", set()).add(action.help)
    assert set(helps) == {"--masks", "--set", "--preset", "--config", "--seed"}
    assert all(len(texts) == 1 for texts in helps.values()), helps


@pytest.mark.parametrize("command", sorted(subparsers()))
def test_every_command_has_help_and_the_common_message_options(command, run_cli, capsys):
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args([command, "--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    assert f"mrsynth {command}" in text
    for option in ("--quiet", "--verbose", "--progress"):
        assert option in text, option


def test_documented_commands_run_on_fixture_data(tmp_path, run_cli):
    """simulate -> prepare -> inspect -> labels -> train -> train --resume -> baselines -> predict (both forms) ->
    evaluate (both forms)."""
    data, cache, run, predictions = tmp_path / "data", tmp_path / "cache", tmp_path / "run", tmp_path / "pred"

    def ok(*args):
        code, out, err = run_cli(*args)
        assert code == 0, (args, err)
        return out

    ok("simulate", data, "--subjects", "2", "--voxel-size", "4", "--seed", "3", "--figure", "--quiet")
    assert (data / "simulated_subjects.png").exists()
    ok("prepare", data, "--out", cache, "--layout", "hcp", "--jobs", "2", "--quiet")
    inspected = json.loads(ok("inspect", cache, "--json", "--patch-size", "16", "--stride", "8"))
    assert [s["id"] for s in inspected["subjects"]] == ["sim001", "sim002"]
    assert ok("labels", "--markdown") == labels.markdown_table()
    settings = sum((["--set", s] for s in TINY), [])
    summary = ok(
        "train",
        "--cache",
        cache,
        "--train",
        "sim001",
        "--test",
        "sim002",
        "--out",
        run,
        "--epochs",
        "1",
        "--quiet",
        *settings,
    )
    assert json.loads(summary[: summary.rindex("}") + 1])["epochs"] == 1
    resumed = ok("train", "--resume", run, "--epochs", "2", "--quiet")
    assert json.loads(resumed[: resumed.rindex("}") + 1])["epochs"] == 2
    assert "tissue-mean" in ok("baselines", run)
    folder = data / "sim002" / HCP_FOLDER
    t1, seg, mask, t2 = (folder / f"{HCP_NAMES[r]}.nii.gz" for r in ("t1", "seg", "mask", "t2"))
    ok(
        "predict",
        "--model",
        run / "model",
        "--t1",
        t1,
        "--seg",
        seg,
        "--mask",
        mask,
        "--out",
        tmp_path / "one.nii.gz",
        "--quiet",
    )
    assert nib.load(tmp_path / "one.nii.gz").shape == nib.load(t1).shape
    ok("predict", "--model", run / "model", "--data", cache, "--out-dir", predictions, "--quiet")
    assert sorted(p.name for p in predictions.iterdir()) == ["sim001.nii.gz", "sim002.nii.gz"]
    ok("evaluate", "--pred", predictions, "--ref", cache, "--json", tmp_path / "scores.json")
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert set(scores["per_subject"]) == {"sim001", "sim002"} and scores["summary"]["psnr"]["n"] == 2
    table = ok("evaluate", "--pred", tmp_path / "one.nii.gz", "--ref", t2, "--mask", mask, "--seg", seg)
    assert "mse_grey_matter" in table and "one.nii.gz" in table


@pytest.mark.slow
def test_demo_writes_its_table_from_its_numbers(tmp_path, run_cli, monkeypatch):
    """The whole demo, its two trainings cut to one short epoch each and its subjects simulated at 2 mm (what is
    tested is the table and the files it writes, not how well six epochs train on 1 mm heads: `make demo` does)."""
    from functools import partial

    from mrsynth.experiments import demo

    short = ["optim.epochs=1", "data.max_patches_per_epoch=64", "data.max_eval_patches=64"]
    monkeypatch.setattr(demo, "DEMO_SETTINGS", demo.DEMO_SETTINGS + short)
    monkeypatch.setattr(demo, "QUALITY_SETTINGS", demo.QUALITY_SETTINGS + short)
    monkeypatch.setattr(demo, "simulate_dataset", partial(demo.simulate_dataset, voxel_size=2.0))
    code, out, err = run_cli("demo", "--out", tmp_path / "demo", "--quiet")
    assert code == 0, err
    results = json.loads((tmp_path / "demo" / "results.json").read_text())
    text = (tmp_path / "demo" / "results.md").read_text()
    assert set(results["scores"]) == {
        "9-layer FCN + masks (paper)",
        "--preset quality, T1w only",
        "tissue-mean",
        "intensity-map",
        "pretrained, zero-shot (no training)",
    }
    for name, scores in results["scores"].items():
        assert f"| {name} | {scores['mse_fov']:.4g} | {scores['mse']:.4g} |" in text
    for name in (
        "prediction.png",
        "simulated_subjects.png",
        "run/model/model.json",
        "run/learning_curve.png",
        "run-quality/model/model.json",
        "view.html",
    ):
        assert (tmp_path / "demo" / name).exists(), name
    code, _, err = run_cli("demo", "--out", tmp_path / "demo", "--quiet")
    assert code == 2 and "exists already" in err
