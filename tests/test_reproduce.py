"""A tiny version of the experiment grid: report structure, numbers traceable to results.json, reuse."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from mrsynth.experiments.effects import (
    HOLDS,
    NOT_SIGNIFICANT,
    OPPOSITE,
    bootstrap_interval,
    experiment,
    reduction,
    unit_errors,
)
from mrsynth.experiments.reproduce import EXPERIMENT_SCALES, _run_configs, assign_subjects, reproduce
from mrsynth.report import fmt, pct


def _numbers(value, found: set) -> set:
    if isinstance(value, bool):
        return found
    if isinstance(value, (int, float)):
        found.update({fmt(value), fmt(-value), pct(value), pct(-value), str(value)})
    elif isinstance(value, dict):
        for item in value.values():
            _numbers(item, found)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _numbers(item, found)
    return found


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduction")
    return out, reproduce(out, scale="tiny", progress=False, seeds=2)


def _runs(results) -> list[dict]:
    return [run for grid in results["per_seed"].values() for run in grid["runs"].values()]


@pytest.mark.slow
def test_report_structure(grid):
    out, results = grid
    for name in (
        "report.md",
        "report.html",
        "results.json",
        "figures/figure3_learning_curves.png",
        "figures/figure4_one_subject.png",
        "figures/figure5_many_subjects.png",
        "figures/view.html",
    ):
        assert (out / name).exists(), name
    assert results["seeds"] == [0, 1] and all(len(g["runs"]) == 10 for g in results["per_seed"].values())  # 4+4+2
    assert results["subjects"]["test"] == sorted(results["subjects"]["test"]) and len(results["subjects"]["test"]) == 5
    text = (out / "report.md").read_text()
    for heading in (
        "Table 1",
        "Table 2",
        "Table 3",
        "Figure 3",
        "Figure 4",
        "Figure 5",
        "baseline: tissue-mean",
        "baseline: intensity-map",
        "verdict",
        "95% CI",
        " ± ",
    ):
        assert heading in text, heading
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3 and 'src="figures' not in html
    saved = json.loads((out / "results.json").read_text())
    assert saved["comparisons"] == results["comparisons"]
    for seed, grid in saved["per_seed"].items():
        assert all(r["config"]["seed"] == int(seed) and "summary" in r for r in grid["runs"].values())
    assert "torch" in saved["versions"]


@pytest.mark.slow
def test_every_number_in_the_report_comes_from_results_json(grid):
    out, _ = grid
    raw = (out / "results.json").read_text()
    known = _numbers(json.loads(raw), set())
    text = (out / "report.md").read_text()
    tokens = re.findall(r"-?\d[\d,]*\.\d+%?|-?\d{1,3}(?:,\d{3})+", text)
    assert tokens
    unexplained = [t for t in tokens if t not in known and t not in raw]
    assert not unexplained, unexplained


@pytest.mark.slow
def test_verdicts_follow_the_numbers(grid):
    """Each effect: the point estimate from the tables' means, the interval from the seeds' unit errors, the words
    from the rule (the paper's direction and an interval excluding 0, the paper's direction, or not)."""
    _, results = grid
    assert len(results["comparisons"]) == 11
    detail = results["tables_detail"]
    for c in results["comparisons"]:
        low, high = c["ci95"]
        assert low <= high
        if c["ours_reduction"] * c["paper_reduction"] < 0:
            assert c["verdict"] == OPPOSITE
        elif low > 0 or high < 0:
            assert c["verdict"] == HOLDS, c
        else:
            assert c["verdict"] == NOT_SIGNIFICANT, c
        assert c["same_direction"] == ((c["paper_reduction"] > 0) == (c["ours_reduction"] > 0))
        assert c["size_ratio"] == pytest.approx(c["ours_reduction"] / c["paper_reduction"])
        assert c["within_factor_2"] == (0.5 <= c["size_ratio"] <= 2)
    masks = next(
        c for c in results["comparisons"] if c["effect"] == "masks vs T1w only, 9 layers" and c["table"] == "table2"
    )
    rows = detail["table2"]
    assert masks["ours_reduction"] == pytest.approx(
        reduction(rows["9 layers, T1w"]["patch"]["mse"], rows["9 layers, T1w + masks"]["patch"]["mse"])
    )
    for grid in results["per_seed"].values():
        for name, units in grid["unit_errors"].items():
            table, layers, kind = experiment(name)
            patch = grid["tables_detail"][table][f"{layers} layers, {kind}"]["patch"]
            assert sum(units["sse"]) / sum(units["pixels"]) == pytest.approx(patch["mse"])
            if table == "table1":  # within one subject: each test patch is a unit
                assert len(units["units"]) == patch["patches"]
            else:
                assert units["units"] == sorted(results["subjects"]["test"])
    for table_name, table in results["beats_baselines"].items():
        for model, outcome in table.items():
            brain = outcome["mse_brain"]
            assert outcome["beats_both"] == (brain["network"] < min(brain["tissue-mean"], brain["intensity-map"]))
            assert outcome["mse"]["network"] == pytest.approx(
                results["tables_detail"][table_name][model]["patch"]["mse"]
            )
            assert 0 <= outcome["seeds_beating_both"] <= outcome["seeds"] == 2


def _units(sse, pixels=1.0):
    return {"units": [f"u{i}" for i in range(len(sse))], "sse": list(sse), "pixels": [pixels] * len(sse)}


def test_bootstrap_interval_over_seeds_and_units():
    rng = np.random.default_rng(0)
    before = [_units(rng.uniform(1, 2, 20)) for _ in range(3)]
    halved = [_units(np.array(b["sse"]) / 2) for b in before]
    assert bootstrap_interval(before, halved) == pytest.approx((0.5, 0.5))
    # half the units better, half worse by as much: no effect to detect
    mixed = [_units(np.array(b["sse"]) * np.tile([0.7, 1.3], 10)) for b in before]
    low, high = bootstrap_interval(before, mixed)
    assert low < 0 < high
    # one seed much better than the others: resampling seeds widens the interval
    seeds_differ = [_units(np.array(b["sse"]) * f) for b, f in zip(before, (0.5, 0.9, 0.95))]
    wide, narrow = bootstrap_interval(before, seeds_differ), bootstrap_interval(before[:1], seeds_differ[:1])
    assert wide[1] - wide[0] > narrow[1] - narrow[0]
    assert bootstrap_interval(before, mixed) == bootstrap_interval(before, mixed)  # seeded


def test_unit_errors_sum_patches_by_subject_or_keep_patches():
    errors = {
        "item": np.array([4, 9, 11]),
        "subject": np.array([1, 0, 1]),
        "sse": np.array([1.0, 2.0, 3.0]),
        "pixels": np.array([10, 10, 10]),
    }
    assert unit_errors(errors, ["a", "b"]) == {"units": ["a", "b"], "sse": [2.0, 4.0], "pixels": [10.0, 20.0]}
    assert unit_errors(errors, None)["units"] == ["11", "4", "9"]


@pytest.mark.slow
def test_a_second_run_reuses_finished_runs_and_compares_with_an_earlier_one(grid, tmp_path):
    out, first = grid
    earlier = json.loads((out / "results.json").read_text())
    for c in earlier["comparisons"]:  # an older results.json: other reductions, no size_ratio, CI or verdict yet
        c["ours_reduction"] = -0.5 * c["paper_reduction"]
        for key in ("size_ratio", "ci95", "verdict", "within_factor_2"):
            del c[key]
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "results.json").write_text(json.dumps(earlier))
    again = reproduce(
        out, scale="tiny", progress=False, compare=tmp_path / "old", compare_label="old simulator", seeds=2
    )
    assert {r["status"] for r in _runs(again)} == {"reused"}
    assert again["tables_detail"] == first["tables_detail"]
    compared = {c["effect"] + c["table"]: c for c in again["compared_with"]["comparisons"]}
    assert all(c["size_ratio"] == pytest.approx(-0.5) and not c["same_direction"] for c in compared.values())
    text = (out / "report.md").read_text()
    n = len(first["comparisons"])
    assert "old simulator: ours / paper" in text and f"0 of {n} effects in the paper's direction with a CI" in text
    assert f"{n} opposite" in text
    for c in again["comparisons"]:
        row = next(line for line in text.splitlines() if line.startswith(f"| {c['effect']} | {c['table']} |"))
        assert row.rstrip(" |").endswith(f"{pct(-0.5 * c['paper_reduction'])} | - | {fmt(-0.5)} | {OPPOSITE}"), row


def test_compare_with_something_that_is_not_a_reproduction_is_refused_before_any_work(tmp_path, run_cli):
    from mrsynth.errors import InputError

    with pytest.raises(InputError, match="no reproduction results"):
        reproduce(tmp_path / "out", scale="tiny", progress=False, compare=tmp_path / "nothing")
    (tmp_path / "bad.json").write_text("{}")
    code, _, err = run_cli(
        "reproduce", "--scale", "tiny", "--out", tmp_path / "out", "--compare", tmp_path / "bad.json"
    )
    assert code == 2 and "bad.json" in err and "not the results of a reproduction" in err
    assert not (tmp_path / "out").exists()


def test_paper_scale_trains_each_table_as_the_paper_did():
    """The run configurations built for --scale paper carry the paper's protocol (sections 3 and 4.2)."""
    ids = [f"{i:06d}" for i in range(60)]
    subjects = assign_subjects(ids, EXPERIMENT_SCALES["paper"])
    configs = _run_configs("cache", EXPERIMENT_SCALES["paper"], subjects, seed=0)
    assert len(configs) == 10 and len(subjects["many"]) == 50 and len(subjects["test"]) == 5
    for name, config in configs.items():
        many = name.startswith("table3")
        assert (config.optim.batch_size, config.optim.epochs) == ((128, 8) if many else (32, 20)), name
        assert (config.data.patch_size, config.data.stride, config.data.norm) == (128, 24, "paper"), name
        assert config.data.max_patches_per_epoch == 0 and config.data.max_eval_patches == 0, name
        assert config.model.layers in (3, 9) and config.data.channels in (1, 9)
    assert configs["table1-L9-masks"].data.split == "within"
    assert configs["table3-L9-none"].data.train == subjects["many"]
    assert not set(subjects["many"]) & set(subjects["test"])


@pytest.mark.slow
def test_data_option_takes_any_layout(tmp_path, run_cli):
    from mrsynth.io.fixtures import write_dataset

    root = write_dataset(tmp_path / "bids", 7, "bids", shape=(40, 48, 36))
    code, out, err = run_cli("reproduce", "--data", root, "--scale", "tiny", "--out", tmp_path / "r", "--quiet")
    assert code == 0, err
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    assert results["data"] == str(root) and results["subjects"]["one"] == "sub-001"
    assert results["subjects"]["test"] == [f"sub-00{i}" for i in range(2, 7)]
    code, _, err = run_cli(
        "reproduce",
        "--data",
        write_dataset(tmp_path / "few", 3, "hcp"),
        "--scale",
        "tiny",
        "--out",
        tmp_path / "r2",
        "--quiet",
    )
    assert code == 2 and "at least 7 subjects" in err
