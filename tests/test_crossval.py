"""Cross-validation (mrsynth.experiments.crossval): folds, scores per held-out subject, paired differences,
resumption."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import TINY

from mrsynth.errors import InputError
from mrsynth.experiments.crossval import bootstrap_ci, make_folds
from mrsynth.io.fixtures import write_dataset


def test_folds_hold_out_every_subject_exactly_once():
    ids = [f"s{i}" for i in range(7)]
    assert make_folds(ids, "loo") == [[i] for i in ids]
    folds = make_folds(ids, 3, seed=1)
    assert len(folds) == 3 and sorted(sum(folds, [])) == ids and {len(f) for f in folds} <= {2, 3}
    with pytest.raises(InputError, match="between 2 and 7"):
        make_folds(ids, 9)
    with pytest.raises(InputError, match="loo"):
        make_folds(ids, "half")


def test_bootstrap_interval_brackets_the_mean_and_collapses_for_constant_differences():
    assert bootstrap_ci([1.5, 1.5, 1.5]) == (1.5, 1.5)
    rng = np.random.default_rng(0)
    values = rng.normal(2.0, 1.0, 40).tolist()
    low, high = bootstrap_ci(values)
    assert low < np.mean(values) < high and 0.3 < high - low < 1.2  # about 2 x 1.96 / sqrt(40)


def test_crossval_cli_scores_every_held_out_subject_and_resumes_fold_by_fold(tmp_path, run_cli):
    root = write_dataset(tmp_path / "data", 3, "hcp", shape=(40, 48, 36))
    settings = sum((["--set", s] for s in TINY + ["optim.epochs=2"]), [])
    out = tmp_path / "cv"
    code, stdout, err = run_cli("crossval", root, "--folds", "loo", "--out", out, "--quiet", *settings)
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    assert sorted(results["per_subject"]) == ["001", "002", "003"]
    for scores in results["per_subject"].values():
        assert set(scores) == {"network", "tissue-mean", "intensity-map"}
        assert all(np.isfinite(s["psnr_p99"]) for s in scores.values())
    network = [s["network"]["psnr_p99"] for s in results["per_subject"].values()]
    assert results["summary"]["network"]["psnr_p99"]["mean"] == pytest.approx(np.mean(network))
    for baseline, by_metric in results["paired"].items():
        assert set(by_metric) == {"psnr_p99", "psnr"}
        for metric, paired in by_metric.items():
            expected = [s["network"][metric] - s[baseline][metric] for s in results["per_subject"].values()]
            assert paired["mean"] == pytest.approx(np.mean(expected))
            assert paired["ci95"][0] <= paired["mean"] <= paired["ci95"][1]
            assert f"network - {baseline}, {metric}: {paired['mean']:+.2f} dB" in stdout
    assert [f["train"] for f in results["folds"]] == [["002", "003"], ["001", "003"], ["001", "002"]]
    for name in ("report.md", "report.html", "figures/per_subject_psnr_p99.png", "figures/002.png", "figures/002.html"):
        assert (out / name).exists(), name
    assert "95 % bootstrap CI" in (out / "report.md").read_text()

    (out / "folds" / "fold-2" / "scores.json").unlink()  # an interrupted scoring step
    code, _, err = run_cli("crossval", root, "--out", out, "--quiet", *settings)
    assert code == 0, err
    again = json.loads((out / "results.json").read_text())
    assert [f["status"] for f in again["folds"]] == ["reused", "reused", "reused"]
    assert (out / "folds" / "fold-2" / "scores.json").exists()
    assert again["per_subject"] == results["per_subject"]


def test_crossval_needs_two_subjects_with_a_t2w(tmp_path, run_cli):
    root = write_dataset(tmp_path / "data", 1, "hcp")
    code, _, err = run_cli("crossval", root, "--out", tmp_path / "cv", "--quiet")
    assert code == 2 and "at least 2 subjects" in err
