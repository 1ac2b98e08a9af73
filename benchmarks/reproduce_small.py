"""Wall-clock time of `mrsynth reproduce --scale small` from scratch (simulation, 10 training runs, scoring, report).

Target: at most 45 minutes on the 2-core CPU. Runs the command in a new empty output folder.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run() -> dict:
    out = Path(tempfile.mkdtemp(prefix="reproduce-small-")) / "out"
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "mrsynth", "reproduce", "--scale", "small", "--out", str(out), "--quiet"],
        check=True,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    results = json.loads((out / "results.json").read_text())
    agree = sum(c["same_direction"] for c in results["comparisons"])
    return {
        "wall_seconds": wall,
        "reported_seconds": results["seconds"],
        "runs": len(results["runs"]),
        "same_direction": agree,
        "effects": len(results["comparisons"]),
        "output": str(out),
    }


def markdown(result: dict) -> str:
    return "\n".join(
        [
            "| what | minutes |",
            "|---|---|",
            f"| whole command, wall clock | {result['wall_seconds'] / 60:.1f} |",
            "",
            f"{result['runs']} training runs; {result['same_direction']} of {result['effects']} of the paper's effects "
            f"in the same direction in that run. Target: at most 45 minutes."
            + (f" {result['note']}" if result.get("note") else ""),
        ]
    )
