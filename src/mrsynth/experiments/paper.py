"""The reproduction's report (Tables 1-3 with ours beside the paper's, the effects with their intervals and
verdicts) and the paper's Figures 3-5 made from our runs.

Every text of the report is computed from the results' numbers; this module holds no number of ours.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..evaluation import prepared_page, write_page
from ..figures import learning_curve_figure, patch_grid_figure
from ..inference import Model
from ..report import fmt, pct
from ..training import TrainConfig, load_run_data, runs
from .effects import HOLDS, NOT_SIGNIFICANT, OPPOSITE, PAPER, RESAMPLES, SIZE_FACTOR, experiment, median_ratio


def _cell(scores: dict, key: str) -> str:
    """A table cell: the mean over seeds, ± the SD where there are several."""
    sd = scores.get(f"{key}_sd")
    return fmt(scores.get(key)) + (f" ± {fmt(sd)}" if sd is not None else "")


def _table_blocks(table: str, title: str, results: dict) -> list:
    rows = [
        [
            "model",
            "paper loss",
            "our test patch MSE",
            "our brain-pixel MSE",
            "our volume PSNR (brain)",
            "our volume PSNR, p99 scale (brain)",
            "our volume SSIM (brain)",
        ]
    ]
    for key, scores in results["tables_detail"][table].items():
        paper = PAPER[table].get(tuple(scores["paper_key"])) if scores.get("paper_key") else None
        volume = scores.get("volume") or {}
        rows.append(
            [
                key,
                fmt(paper),
                _cell(scores["patch"], "mse"),
                _cell(scores["patch"], "mse_brain"),
                _cell(volume, "psnr"),
                _cell(volume, "psnr_p99"),
                _cell(volume, "ssim_3d"),
            ]
        )
    return [("h2", title), ("table", rows)]


def build_report(results: dict, figures: dict[str, Path]) -> list:
    """The report as blocks (heading, paragraph, table, image); all text computed from ``results``."""
    seeds = results["seeds"]
    runs_count = sum(len(grid["runs"]) for grid in results["per_seed"].values())
    blocks = [
        ("h1", "mrsynth: reproduction of Alkan, Cocjin & Weitz, Tables 1-3 and Figures 3-5"),
        (
            "p",
            f"Scale {results['scale']['name']}; data: {results['data']}; training seeds "
            f"{', '.join(map(str, seeds))} ({runs_count} training runs; the same data and subjects for every seed); "
            f"loss units: {results['units']}. The paper's losses are MSE in HCP T2w intensity units, so compare "
            "relative changes, not absolute values.",
        ),
        (
            "p",
            "Every network and baseline of a table is scored on the same test patches; volume scores are whole "
            "predicted test volumes, inside the brain mask (within-subject runs have test patches, not test "
            "volumes). " + ("Cells: mean ± SD over the seeds." if len(seeds) > 1 else "Cells: one seed."),
        ),
    ]
    many = len(results["subjects"]["many"])
    for table, title in (
        ("table1", "Table 1: within-subject (one subject, patches split 80/1/19)"),
        ("table2", "Table 2: across-subject, 1 training subject, 5 test subjects"),
        ("table3", f"Table 3: across-subject, {many} training subjects, the same 5 test subjects"),
    ):
        blocks += _table_blocks(table, title, results)
    return blocks + _effect_blocks(results) + _baseline_blocks(results) + _figure_blocks(results, figures)


def _interval(c: dict) -> str:
    return f"{pct(c['ci95'][0])} to {pct(c['ci95'][1])}" if c.get("ci95") else "-"


def _effect_blocks(results: dict) -> list:
    """The paper's effects, ours beside the paper's with a 95 % interval and a verdict (and an earlier
    reproduction's, when compared)."""
    compared, comparisons = results.get("compared_with"), results["comparisons"]
    earlier = {(c["effect"], c["table"]): c for c in compared["comparisons"]} if compared else {}
    header = [
        "effect",
        "table",
        "paper: loss reduction",
        "ours: loss reduction",
        "ours: 95% CI",
        "ours / paper (effect size)",
        "verdict",
    ]
    if compared:
        label = compared["label"]
        header += [f"{label}: loss reduction", f"{label}: 95% CI", f"{label}: ours / paper", f"{label}: verdict"]
    rows = [header]
    for c in comparisons:
        row = [
            c["effect"],
            c["table"],
            pct(c["paper_reduction"]),
            pct(c["ours_reduction"]),
            _interval(c),
            fmt(c.get("size_ratio")),
            _verdict(c),
        ]
        if compared:
            e = earlier.get((c["effect"], c["table"]))
            row += (
                ["-"] * 4 if e is None else [pct(e["ours_reduction"]), _interval(e), fmt(e["size_ratio"]), _verdict(e)]
            )
        rows.append(row)
    blocks = [
        ("h2", "The paper's findings, checked"),
        ("p", _interval_note(results)),
        ("table", rows),
        ("p", "Here: " + tally(comparisons)),
    ]
    if compared:
        matched = [earlier[k] for k in ((c["effect"], c["table"]) for c in comparisons) if k in earlier]
        blocks.append(
            (
                "p",
                f"{compared['label']}: {compared['source']} (data: {compared['data']}; scale "
                f"{compared['scale']}; mrsynth {compared['mrsynth']}): {tally(matched)} "
                f"Median effect size relative to the paper's: {fmt(median_ratio(comparisons))} here, "
                f"{fmt(median_ratio(matched))} there.",
            )
        )
    return blocks


def _interval_note(results: dict) -> str:
    seeds = len(results["seeds"])
    return (
        "Loss reduction: (before - after) / before of the test patch MSE, ours from the means over "
        f"{seeds} seed{'s' if seeds > 1 else ''}. 95% CI: percentile bootstrap ({RESAMPLES} resamples) over seeds "
        "and test units (test subjects; test patches in Table 1), both models of an effect on the same draw. "
        f"Verdict: '{HOLDS}', '{NOT_SIGNIFICANT}' (the CI includes 0) or '{OPPOSITE}'."
    )


def _verdict(c: dict) -> str:
    """The effect's verdict; an earlier reproduction without intervals has only its direction."""
    return c.get("verdict") or ("same direction (no CI)" if c["same_direction"] else OPPOSITE)


def tally(comparisons: list[dict]) -> str:
    """How many effects hold, go the paper's way without significance, go the other way; how many are near in
    size."""
    count = lambda verdict: sum(_verdict(c) == verdict for c in comparisons)  # noqa: E731
    near = sum(c.get("within_factor_2", False) for c in comparisons)
    return (
        f"{count(HOLDS)} of {len(comparisons)} effects in the paper's direction with a CI that excludes 0, "
        f"{count(NOT_SIGNIFICANT)} in its direction but not significant, {count(OPPOSITE)} opposite; "
        f"{near} of {len(comparisons)} within a factor of {SIZE_FACTOR:g} of the paper's size."
    )


def _baseline_blocks(results: dict) -> list:
    blocks = [("h2", "Against the baselines")]
    for table, beats in results["beats_baselines"].items():
        for model, outcome in beats.items():
            brain, every = outcome["mse_brain"], outcome["mse"]
            blocks.append(
                (
                    "p",
                    f"{table}, {model}: test patch MSE over brain pixels {fmt(brain['network'])} vs tissue-mean "
                    f"{fmt(brain['tissue-mean'])} and intensity-map {fmt(brain['intensity-map'])} "
                    f"(over every pixel, the paper's: {fmt(every['network'])} vs {fmt(every['tissue-mean'])} and "
                    f"{fmt(every['intensity-map'])}; means over seeds): "
                    f"{'beats both' if outcome['beats_both'] else 'does not beat both'} over brain pixels; "
                    f"beats both in {outcome['seeds_beating_both']} of {outcome['seeds']} seeds.",
                )
            )
    return blocks


def _figure_blocks(results: dict, figures: dict[str, Path]) -> list:
    blocks = []
    for key, caption in (
        ("figure3", "Figure 3: learning curves, within-subject 9-layer network with masks"),
        ("figure4", "Figure 4: four test patches, 1 training subject"),
        ("figure5", "Figure 5: the same patches, many training subjects"),
    ):
        if key in figures:
            blocks += [("h2", caption), ("img", figures[key])]
    if results.get("viewer"):
        blocks.append(
            (
                "p",
                "Interactive viewer of one test subject (three planes, linked crosshairs, error map): "
                f"{results['viewer']}",
            )
        )
    return blocks


# --------------------------------------------------------------------------- figures 3-5


def _figure_patches(config: TrainConfig, folder: Path, count: int = 4) -> list[int]:
    """Four fixed test patches of the first test subject: the middle slice, most brain, spread out."""
    data = load_run_data(folder, config)
    first = data.test.parts[0]
    per_slice = len(first.rows) * len(first.cols)
    middle = first.subject.stored_shape[0] // 2
    candidates = list(range(middle * per_slice, (middle + 1) * per_slice))
    brain = data.test.brain_windows(candidates).mean(axis=(1, 2)).tolist()
    ranked = [c for _, c in sorted(zip(brain, candidates), reverse=True)]
    return sorted(ranked[: count * 2][::2])


def _patch_figure(
    folders: dict[str, Path],
    models: dict[str, Model],
    configs: dict[str, TrainConfig],
    names: list[str],
    items: list[int],
    path: Path,
    title: str,
) -> Path:
    inputs, target = load_run_data(folders[names[-1]], configs[names[-1]]).test[items]
    columns = [("(a) T1w", inputs[:, 0].numpy()), ("(b) true T2w", target[:, 0].numpy())]
    for letter, name in zip("cdef", names):
        run_inputs, _ = load_run_data(folders[name], configs[name]).test[items]
        with torch.no_grad():
            prediction = models[name].network(run_inputs)[:, 0].numpy()
        _, layers, kind = experiment(name)
        columns.append((f"({letter}) {layers} layers, {kind}", prediction))
    rows = [[(label, images[row]) for label, images in columns] for row in range(len(items))]
    return patch_grid_figure(rows, path, title)


def viewer_page(models: dict[str, Model], run_info: dict, references: dict, path: Path) -> Path | None:
    """An interactive page of the first test subject predicted by the last across-subject network with masks."""
    across = [
        name
        for name, info in run_info.items()
        if "volume" in info["scores"]["network"] and info["config"]["data"]["channels"] > 1
    ]
    if not across or not references:
        return None
    name = across[-1]
    subject, _ = next(iter(references.values()))
    return write_page(
        path,
        prepared_page(models[name].predict(subject), subject),
        f"mrsynth reproduce: {subject.id} predicted by {name}",
    )


def paper_figures(
    folders: dict[str, Path], models: dict[str, Model], configs: dict[str, TrainConfig], folder: Path
) -> dict[str, Path]:
    figures = {}
    within = folders["table1-L9-masks"]
    figures["figure3"] = learning_curve_figure(
        runs.read_history(within), runs.read_steps(within), folder / "figure3_learning_curves.png"
    )
    items = _figure_patches(configs["table2-L9-masks"], folders["table2-L9-masks"])
    order2 = ["table2-L9-none", "table2-L9-masks", "table2-L3-none", "table2-L3-masks"]
    figures["figure4"] = _patch_figure(
        folders, models, configs, order2, items, folder / "figure4_one_subject.png", "Training set = 1 subject"
    )
    order3 = ["table3-L9-none", "table3-L9-masks"]
    figures["figure5"] = _patch_figure(
        folders, models, configs, order3, items, folder / "figure5_many_subjects.png", "Training set = many subjects"
    )
    return figures
