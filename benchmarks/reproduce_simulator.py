"""The paper's effects before and after the richer simulator: `mrsynth reproduce --scale small` on each, effect sizes
as ours / paper.

Before: the simulator of commit BEFORE (the last one before per-subject protocols and within-tissue texture),
run from a git worktree of that commit. After: the current simulator, run with
`mrsynth reproduce --compare BEFORE_OUT --compare-label before`, which puts both runs' effects in one
report (`report.md` of the after run). Same seed, scale and training settings; only the simulated
subjects differ. A ratio of 1 is the paper's effect size; the sign says whether the effect goes the
paper's way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
BEFORE = "0bbe1c9"  # "Networks beyond the paper's ..." (issue 12), the simulator of issue 3


def _reproduce(out: Path, pythonpath: Path | None = None, extra: list[str] = ()) -> None:
    env = dict(os.environ, **({"PYTHONPATH": str(pythonpath)} if pythonpath else {}))
    subprocess.run(
        [sys.executable, "-m", "mrsynth", "reproduce", "--scale", "small", "--out", str(out), "--quiet", *extra],
        check=True,
        env=env,
        capture_output=True,
        text=True,
    )


def from_outputs(before: Path, after: Path) -> dict:
    """Both runs' effects (paper, ours, ours / paper) from their results.json."""
    runs = {
        name: json.loads((folder / "results.json").read_text())
        for name, folder in (("before", before), ("after", after))
    }
    effects = []
    for c in runs["after"]["comparisons"]:
        old = next(o for o in runs["before"]["comparisons"] if (o["effect"], o["table"]) == (c["effect"], c["table"]))
        effects.append(
            {
                "effect": c["effect"],
                "table": c["table"],
                "paper": c["paper_reduction"],
                "before": old["ours_reduction"],
                "after": c["ours_reduction"],
                "ratio_before": old["ours_reduction"] / c["paper_reduction"],
                "ratio_after": c["ours_reduction"] / c["paper_reduction"],
            }
        )
    return {
        "before_commit": BEFORE,
        "data": runs["after"]["data"],
        "effects": effects,
        "seconds": {name: run["seconds"] for name, run in runs.items()},
    }


def run() -> dict:
    root = Path(HERE.parent)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        subprocess.run(
            ["git", "-C", str(root), "worktree", "add", "--detach", str(tmp / "before-tree"), BEFORE],
            check=True,
            capture_output=True,
        )
        try:
            _reproduce(tmp / "before", tmp / "before-tree" / "src")
        finally:
            subprocess.run(
                ["git", "-C", str(root), "worktree", "remove", "--force", str(tmp / "before-tree")], capture_output=True
            )
        _reproduce(tmp / "after", extra=["--compare", str(tmp / "before"), "--compare-label", "before"])
        return from_outputs(tmp / "before", tmp / "after")


def markdown(result: dict) -> str:
    import numpy as np

    lines = [
        "| effect | table | paper: loss reduction | before: ours | before: ours / paper | after: ours | "
        "after: ours / paper |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in result["effects"]:
        lines.append(
            f"| {e['effect']} | {e['table']} | {e['paper']:.1%} | {e['before']:.1%} | {e['ratio_before']:.2f} | "
            f"{e['after']:.1%} | {e['ratio_after']:.2f} |"
        )
    same = {k: sum(e[k] * e["paper"] > 0 for e in result["effects"]) for k in ("before", "after")}
    medians = {k: float(np.median([e[f"ratio_{k}"] for e in result["effects"]])) for k in ("before", "after")}
    close = {k: sum(0.5 <= e[f"ratio_{k}"] <= 2 for e in result["effects"]) for k in ("before", "after")}
    lines += [
        "",
        f"Data: {result['data']}. Effects in the paper's direction: {same['before']} of "
        f"{len(result['effects'])} before, {same['after']} after; median effect size relative to the "
        f"paper's: {medians['before']:.2f} before, {medians['after']:.2f} after; within a factor of 2 of "
        f"the paper's size: {close['before']} before, {close['after']} after. Wall clock: "
        f"{result['seconds']['before'] / 60:.0f} and {result['seconds']['after'] / 60:.0f} minutes."
        + (f" {result['note']}" if result.get("note") else ""),
    ]
    return "\n".join(lines)
