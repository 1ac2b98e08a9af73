"""Shared benchmark plumbing: timing, machine description, results files."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def machine() -> dict:
    """What the numbers were measured on."""
    import numpy
    import scipy
    import torch

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores_visible": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }


def repeat(run: Callable[[], None], runs: int = 5, warmup: int = 1) -> dict:
    """Median, min and max wall-clock seconds of ``runs`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "runs": runs,
        "warmup": warmup,
        "all_s": times,
    }


def save(name: str, result: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def pretrained_weights() -> str:
    """Which shipped pretrained model a benchmark measured: its name with recipe, and its weights' SHA-256."""
    from mrsynth.networks import PRETRAINED, load_model

    info = load_model(PRETRAINED)[1]
    return f"{info.name()}, weights sha256 {info.weights_sha256[:8]}"


def single_core_prefix() -> list[str]:
    """``taskset -c 0`` where available, so a 'one core' figure really is one core."""
    try:
        subprocess.run(["taskset", "-c", "0", "true"], check=True, capture_output=True)
        return ["taskset", "-c", "0"]
    except (OSError, subprocess.CalledProcessError):
        return []


def child_json(code: str, *args: str, env: dict[str, str] | None = None) -> dict:
    """Run ``python -c code args`` in a fresh interpreter and parse its last stdout line as JSON.

    Process-wide settings (the allocator tuning, compiled kernels, peak RSS) then belong to
    one measurement only.  ``env`` adds to the current environment.
    """
    import sys

    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        check=True,
        capture_output=True,
        text=True,
        env=dict(os.environ, **(env or {})),
        cwd=HERE.parent,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])
