"""The paper's Tables 1-3 as published, its effects checked against ours, and the reproduction's report.

Every text of the report is computed from the results' numbers; this module holds no number of ours.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..report import fmt, pct

#: The paper's loss values (section 5.2, Tables 1-3), keyed by (layers, input).
PAPER = {
    "table1": {(3, "T1w"): 12795, (3, "T1w + masks"): 10664, (9, "T1w"): 5177, (9, "T1w + masks"): 4091},
    "table2": {(3, "T1w"): 20385, (3, "T1w + masks"): 16627, (9, "T1w"): 12643, (9, "T1w + masks"): 9783},
    "table3": {(9, "T1w"): 9093, (9, "T1w + masks"): 7728},
}
INPUTS = {"T1w": 1, "T1w + masks": 9}


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
            add(f"masks vs T1w only, {layers} layers", table, (layers, "T1w", "network"), (layers, "T1w + masks", "network"))
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
    return {"effect": effect, "table": table, "paper_reduction": paper, "ours_reduction": ours,
            "same_direction": bool(np.sign(paper) == np.sign(ours)),
            "size_ratio": ours / paper if paper else None}


def load_compared(path: str | Path, label: str) -> dict:
    """The effects of an earlier reproduction (its folder or ``results.json``), to report beside this one's.

    For example a run made with an earlier simulator, or on other data: each effect's size
    relative to the paper's, before and after, shows what the change did to fidelity.
    """
    path = Path(path)
    path = path / "results.json" if path.is_dir() else path
    try:
        earlier = json.loads(path.read_text())
        comparisons = {(c["effect"], c["table"]): _comparison(c["effect"], c["table"], c["paper_reduction"],
                                                              c["ours_reduction"])
                       for c in earlier["comparisons"]}
    except FileNotFoundError:
        raise InputError("no reproduction results here (expected the folder of an earlier `mrsynth reproduce` "
                         "or its results.json)", path) from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InputError(f"not the results of a reproduction ({type(error).__name__}: {error})", path) from None
    return {"label": label, "source": str(path), "data": earlier.get("data"), "mrsynth": earlier.get("mrsynth"),
            "scale": (earlier.get("scale") or {}).get("name"), "comparisons": list(comparisons.values())}


def _median_ratio(comparisons: list[dict]) -> float | None:
    ratios = [c["size_ratio"] for c in comparisons if c.get("size_ratio") is not None]
    return float(np.median(ratios)) if ratios else None


def _table_blocks(table: str, title: str, results: dict) -> list:
    rows = [["model", "paper loss", "our test patch MSE", "our brain-pixel MSE", "our volume PSNR (brain)",
             "our volume PSNR, p99 scale (brain)", "our volume SSIM (brain)"]]
    for key, scores in results["tables_detail"][table].items():
        paper = PAPER[table].get(tuple(scores["paper_key"])) if scores.get("paper_key") else None
        volume = scores.get("volume") or {}
        rows.append([key, fmt(paper), fmt(scores["patch"]["mse"]), fmt(scores["patch"]["mse_brain"]),
                     fmt(volume.get("psnr")), fmt(volume.get("psnr_p99")), fmt(volume.get("ssim_3d"))])
    return [("h2", title), ("table", rows)]


def build_report(results: dict, figures: dict[str, Path]) -> list:
    """The report as blocks (heading, paragraph, table, image); all text computed from ``results``."""
    units = results["units"]
    blocks = [("h1", "mrsynth: reproduction of Alkan, Cocjin & Weitz, Tables 1-3 and Figures 3-5"),
              ("p", f"Scale {results['scale']['name']}; data: {results['data']}; {len(results['runs'])} training "
                    f"runs; loss units: {units}. The paper's losses are MSE in HCP T2w intensity units, so "
                    "compare relative changes, not absolute values."),
              ("p", "Every network and baseline of a table is scored on the same test patches; volume scores "
                    "are whole predicted test volumes, inside the brain mask (within-subject runs have test "
                    "patches, not test volumes).")]
    blocks += _table_blocks("table1", "Table 1: within-subject (one subject, patches split 80/1/19)", results)
    blocks += _table_blocks("table2", "Table 2: across-subject, 1 training subject, 5 test subjects", results)
    blocks += _table_blocks("table3", f"Table 3: across-subject, {len(results['subjects']['many'])} training "
                                      "subjects, the same 5 test subjects", results)
    compared = results.get("compared_with")
    earlier = {(c["effect"], c["table"]): c for c in compared["comparisons"]} if compared else {}
    header = ["effect", "table", "paper: loss reduction", "ours: loss reduction", "ours / paper (effect size)",
              "same direction"]
    if compared:
        header += [f"{compared['label']}: loss reduction", f"{compared['label']}: ours / paper",
                   f"{compared['label']}: same direction"]
    rows = [header]
    for c in results["comparisons"]:
        row = [c["effect"], c["table"], pct(c["paper_reduction"]), pct(c["ours_reduction"]),
               fmt(c.get("size_ratio")), "yes" if c["same_direction"] else "no"]
        if compared:
            e = earlier.get((c["effect"], c["table"]))
            row += ["-", "-", "-"] if e is None else [pct(e["ours_reduction"]), fmt(e["size_ratio"]),
                                                      "yes" if e["same_direction"] else "no"]
        rows.append(row)
    agree = sum(c["same_direction"] for c in results["comparisons"])
    blocks += [("h2", "The paper's findings, checked"), ("table", rows),
               ("p", f"{agree} of {len(results['comparisons'])} effects go in the paper's direction in this run.")]
    if compared:
        matched = [earlier[k] for k in ((c["effect"], c["table"]) for c in results["comparisons"]) if k in earlier]
        blocks.append(("p", f"{compared['label']}: {compared['source']} (data: {compared['data']}; scale "
                            f"{compared['scale']}; mrsynth {compared['mrsynth']}); "
                            f"{sum(e['same_direction'] for e in matched)} of {len(matched)} effects in the paper's "
                            f"direction there. Median effect size relative to the paper's: "
                            f"{fmt(_median_ratio(results['comparisons']))} here, {fmt(_median_ratio(matched))} "
                            "there."))
    for c in results["comparisons"]:
        verb = "reduces" if c["ours_reduction"] > 0 else "increases"
        blocks.append(("p", f"{c['effect']} ({c['table']}): our loss changes by {pct(-c['ours_reduction'])} "
                            f"(the paper: {pct(-c['paper_reduction'])}); the change {verb} our loss, "
                            f"{'as' if c['same_direction'] else 'unlike'} in the paper."))
    blocks.append(("h2", "Against the baselines"))
    for table, beats in results["beats_baselines"].items():
        for model, outcome in beats.items():
            blocks.append(("p", f"{table}, {model}: test patch MSE {fmt(outcome['network'])} vs tissue-mean "
                                f"{fmt(outcome['tissue-mean'])} and intensity-map {fmt(outcome['intensity-map'])}: "
                                f"{'beats both' if outcome['beats_both'] else 'does not beat both'}."))
    for key, caption in (("figure3", "Figure 3: learning curves, within-subject 9-layer network with masks"),
                         ("figure4", "Figure 4: four test patches, 1 training subject"),
                         ("figure5", "Figure 5: the same patches, many training subjects")):
        if key in figures:
            blocks += [("h2", caption), ("img", figures[key])]
    if results.get("viewer"):
        blocks.append(("p", f"Interactive viewer of one test subject (three planes, linked crosshairs, error map): "
                            f"{results['viewer']}"))
    return blocks
