"""The lookup baselines (mrsynth.training.baselines, mrsynth.networks.lookup): fitted values, files, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mrsynth import labels
from mrsynth.data import list_prepared
from mrsynth.networks import IntensityMap, Normalization, TissueMean, load_model
from mrsynth.training import fit_for_run, runs


def test_baselines_fit_what_a_lookup_table_can(trained, tmp_path, run_cli):
    run, _, cache = trained
    paths = fit_for_run(run)
    tissue, _ = load_model(paths["tissue-mean"])
    mapping, _ = load_model(paths["intensity-map"])
    assert isinstance(tissue, TissueMean) and isinstance(mapping, IntensityMap)
    # tissue-mean: the fixture's grey matter has one T2w value, so its group mean is that value
    prepared = list_prepared(cache)[0]
    norm = Normalization.load(run / runs.NORMALIZATION)
    to_normalized = norm.transform("t2", prepared.stats)
    bits = np.asarray(prepared.array("tissue"))
    grey_in_brain = labels.has_class(bits, "grey_matter") & labels.in_brain(bits)
    expected = float(to_normalized(np.mean(np.asarray(prepared.array("t2"))[grey_in_brain])))
    group = 2 * (labels.BIT["grey_matter"] - 1) + 1
    assert tissue.table[group].item() == pytest.approx(expected, rel=1e-4)  # across subjects: whole volumes
    data = runs.load_run_data(run)
    inputs, target = data.test[len(data.test) // 2]
    assert tissue(inputs[None]).shape == target[None].shape == mapping(inputs[None]).shape
    # intensity map: exact on a noiseless monotone relation
    x = torch.linspace(-1, 3, 1000)
    fitted = IntensityMap(x[::10], torch.tanh(x[::10]))
    inputs = torch.zeros(1, 9, 1, 1000)
    inputs[0, 0, 0] = x
    torch.testing.assert_close(fitted(inputs)[0, 0, 0], torch.tanh(x), atol=2e-3, rtol=0)
    # every model kind predicts and evaluates through the same CLI
    code, _, err = run_cli(
        "predict", "--model", paths["tissue-mean"], "--data", cache, "--out-dir", tmp_path / "p", "--quiet"
    )
    assert code == 0, err
    code, out, err = run_cli("evaluate", "--pred", tmp_path / "p", "--ref", cache, "--json", tmp_path / "e.json")
    assert code == 0, err
    result = json.loads((tmp_path / "e.json").read_text())
    assert set(result["per_subject"]) == {"001", "002", "003"} and result["summary"]["mse"]["n"] == 3
    assert "mean ± SD" in out


def test_cli_baselines_command_writes_both_model_folders(trained, run_cli, tmp_path):
    """Regression: the positional argument `run` used to overwrite the command's handler (TypeError)."""
    run, _, _ = trained
    code, out, err = run_cli("baselines", run)
    assert code == 0, err
    for kind in ("tissue-mean", "intensity-map"):
        assert f"{kind}: {run / runs.BASELINES / kind}" in out
        _, info = load_model(run / runs.BASELINES / kind)
        assert info.kind == kind and info.training["subjects"] == ["001"]
    code, _, err = run_cli("baselines", tmp_path / "no-run")
    assert code == 2 and "not a run folder" in err
