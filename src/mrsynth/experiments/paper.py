"""The paper's Tables 1-3 as published, its effects checked against ours, its Figures 3-5 made from our runs, and
the reproduction's report.

Every text of the report is computed from the results' numbers; this module holds no number of ours.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..evaluation import prepared_page, write_page
from ..figures import learning_curve_figure, patch_grid_figure
from ..inference import Model
from ..report import fmt, pct
from ..training import TrainConfig, load_run_data, runs

#: The paper's loss values (section 5.2, Tables 1-3), keyed by (layers, input).
PAPER = {
    "table1": {(3, "T1w"): 12795, (3, "T1w + masks"): 10664, (9, "T1w"): 5177, (9, "T1w + masks"): 4091},
    "table2": {(3, "T1w"): 20385, (3, "T1w + masks"): 16627, (9, "T1w"): 12643, (9, "T1w + masks"): 9783},
    "table3": {(9, "T1w"): 9093, (9, "T1w + masks"): 7728},
}
INPUTS = {"T1w": 1, "T1w + masks": 9}


def experiment(name: str) -> tuple[str, int, str]:
    table, tag = name.split("-", 1)
    layers, kind = tag.split("-")
    return table, int(layers[1:]), "T1w + masks" if kind == "masks" else "T1w"


def reduction(before: float, after: float) -> float:
    """Relative reduction of the loss from ``before`` to ``after`` (positive: lower is better)."""
    return (before - after) / before


def comparisons(tables: dict) -> list[dict]:
    """The paper's three effects, paper vs ours, with a verdict computed from the signs."""
    rows = []

    def add(effect, table, before, after):
        paper_before, paper_after = PAPER[table].get(before[:2]), PAPER[table].get(after[:2])
        ours_before, ours_after = tables[table][before], tables[table][after]
        paper = reduction(paper_before, paper_after)
        ours = reduction(ours_before, ours_after)
        rows.append(_comparison(effect, table, paper, ours))

    for table in ("table1", "table2"):
        for layers in (3, 9):
            add(
                f"masks vs T1w only, {layers} layers",
                table,
                (layers, "T1w", "network"),
                (layers, "T1w + masks", "network"),
            )
        for kind in INPUTS:
            add(f"9 vs 3 layers, {kind}", table, (3, kind, "network"), (9, kind, "network"))
    add("masks vs T1w only, 9 layers", "table3", (9, "T1w", "network"), (9, "T1w + masks", "network"))
    for kind in INPUTS:
        paper = reduction(PAPER["table2"][(9, kind)], PAPER["table3"][(9, kind)])
        ours = reduction(tables["table2"][(9, kind, "network")], tables["table3"][(9, kind, "network")])
        rows.append(_comparison(f"many vs 1 training subjects, 9 layers, {kind}", "table2->table3", paper, ours))
    return rows


def _comparison(effect: str, table: str, paper: float, ours: float) -> dict:
    """One effect: both loss reductions, whether they agree in sign, and ours as a fraction of the paper's size."""
    return {
        "effect": effect,
        "table": table,
        "paper_reduction": paper,
        "ours_reduction": ours,
        "same_direction": bool(np.sign(paper) == np.sign(ours)),
        "size_ratio": ours / paper if paper else None,
    }


def load_compared(path: str | Path, label: str) -> dict:
    """The effects of an earlier reproduction (its folder or ``results.json``), to report beside this one's.

    For example a run made with an earlier simulator, or on other data: each effect's size
    relative to the paper's, before and after, shows what the change did to fidelity.
    """
    path = Path(path)
    path = path / "results.json" if path.is_dir() else path
    try:
        earlier = json.loads(path.read_text())
        comparisons = {
            (c["effect"], c["table"]): _comparison(c["effect"], c["table"], c["paper_reduction"], c["ours_reduction"])
            for c in earlier["comparisons"]
        }
    except FileNotFoundError:
        raise InputError(
            "no reproduction results here (expected the folder of an earlier `mrsynth reproduce` or its results.json)",
            path,
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InputError(f"not the results of a reproduction ({type(error).__name__}: {error})", path) from None
    return {
        "label": label,
        "source": str(path),
        "data": earlier.get("data"),
        "mrsynth": earlier.get("mrsynth"),
        "scale": (earlier.get("scale") or {}).get("name"),
        "comparisons": list(comparisons.values()),
    }


def _median_ratio(comparisons: list[dict]) -> float | None:
    ratios = [c["size_ratio"] for c in comparisons if c.get("size_ratio") is not None]
    return float(np.median(ratios)) if ratios else None


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
                fmt(scores["patch"]["mse"]),
                fmt(scores["patch"]["mse_brain"]),
                fmt(volume.get("psnr")),
                fmt(volume.get("psnr_p99")),
                fmt(volume.get("ssim_3d")),
            ]
        )
    return [("h2", title), ("table", rows)]


def build_report(results: dict, figures: dict[str, Path]) -> list:
    """The report as blocks (heading, paragraph, table, image); all text computed from ``results``."""
    blocks = [
        ("h1", "mrsynth: reproduction of Alkan, Cocjin & Weitz, Tables 1-3 and Figures 3-5"),
        (
            "p",
            f"Scale {results['scale']['name']}; data: {results['data']}; {len(results['runs'])} training runs; "
            f"loss units: {results['units']}. The paper's losses are MSE in HCP T2w intensity units, so compare "
            "relative changes, not absolute values.",
        ),
        (
            "p",
            "Every network and baseline of a table is scored on the same test patches; volume scores are whole "
            "predicted test volumes, inside the brain mask (within-subject runs have test patches, not test "
            "volumes).",
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


def _effect_blocks(results: dict) -> list:
    """The paper's effects, ours beside the paper's (and an earlier reproduction's, when compared)."""
    compared, comparisons = results.get("compared_with"), results["comparisons"]
    earlier = {(c["effect"], c["table"]): c for c in compared["comparisons"]} if compared else {}
    header = [
        "effect",
        "table",
        "paper: loss reduction",
        "ours: loss reduction",
        "ours / paper (effect size)",
        "same direction",
    ]
    if compared:
        label = compared["label"]
        header += [f"{label}: loss reduction", f"{label}: ours / paper", f"{label}: same direction"]
    rows = [header]
    for c in comparisons:
        row = [
            c["effect"],
            c["table"],
            pct(c["paper_reduction"]),
            pct(c["ours_reduction"]),
            fmt(c.get("size_ratio")),
            _yes(c["same_direction"]),
        ]
        if compared:
            e = earlier.get((c["effect"], c["table"]))
            row += (
                ["-"] * 3 if e is None else [pct(e["ours_reduction"]), fmt(e["size_ratio"]), _yes(e["same_direction"])]
            )
        rows.append(row)
    agree = sum(c["same_direction"] for c in comparisons)
    blocks = [
        ("h2", "The paper's findings, checked"),
        ("table", rows),
        ("p", f"{agree} of {len(comparisons)} effects go in the paper's direction in this run."),
    ]
    if compared:
        matched = [earlier[k] for k in ((c["effect"], c["table"]) for c in comparisons) if k in earlier]
        blocks.append(
            (
                "p",
                f"{compared['label']}: {compared['source']} (data: {compared['data']}; scale "
                f"{compared['scale']}; mrsynth {compared['mrsynth']}); "
                f"{sum(e['same_direction'] for e in matched)} of {len(matched)} effects in the paper's "
                f"direction there. Median effect size relative to the paper's: "
                f"{fmt(_median_ratio(comparisons))} here, {fmt(_median_ratio(matched))} there.",
            )
        )
    for c in comparisons:
        verb = "reduces" if c["ours_reduction"] > 0 else "increases"
        blocks.append(
            (
                "p",
                f"{c['effect']} ({c['table']}): our loss changes by {pct(-c['ours_reduction'])} "
                f"(the paper: {pct(-c['paper_reduction'])}); the change {verb} our loss, "
                f"{'as' if c['same_direction'] else 'unlike'} in the paper.",
            )
        )
    return blocks


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _baseline_blocks(results: dict) -> list:
    blocks = [("h2", "Against the baselines")]
    for table, beats in results["beats_baselines"].items():
        for model, outcome in beats.items():
            blocks.append(
                (
                    "p",
                    f"{table}, {model}: test patch MSE {fmt(outcome['network'])} vs tissue-mean "
                    f"{fmt(outcome['tissue-mean'])} and intensity-map {fmt(outcome['intensity-map'])}: "
                    f"{'beats both' if outcome['beats_both'] else 'does not beat both'}.",
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
