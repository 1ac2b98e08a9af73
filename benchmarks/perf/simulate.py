"""`mrsynth simulate` seconds per 1 mm subject on one core (issue: at most ~15 s).

Measured in a child process pinned to one core (taskset -c 0, one BLAS/OpenMP thread):
the whole per-subject work of `simulate_dataset` (signal model, deformation, bias, noise,
and writing the four NIfTI files), the default anatomy loaded once beforehand.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from benchmarks.fixtures import single_core_prefix

CHILD = textwrap.dedent("""
    import json, sys, tempfile, time
    from pathlib import Path
    from benchmarks.fixtures import repeat
    from mrsynth.simulate import default_anatomy, simulate_subject, write_hcp_subject
    start = time.perf_counter(); anatomy = default_anatomy(); load_s = time.perf_counter() - start
    out = Path(tempfile.mkdtemp())
    seeds = iter(range(100))
    def one(write=True):
        subject = simulate_subject(anatomy, next(seeds), 1.0)
        if write:
            write_hcp_subject(subject, out, "s")
    total = repeat(one, runs=5, warmup=1)
    compute = repeat(lambda: one(write=False), runs=5, warmup=0)
    print(json.dumps({"anatomy_load_s": load_s, "per_subject": total, "per_subject_without_writing": compute}))
""")


def run() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    command = single_core_prefix() + [sys.executable, "-c", CHILD]
    out = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["pinned_to_one_core"] = bool(single_core_prefix())
    return result


def markdown(result: dict) -> str:
    total, compute = result["per_subject"], result["per_subject_without_writing"]
    return "\n".join(
        [
            "| what (one 197 x 233 x 189 subject, 1 mm) | median s | min-max s |",
            "|---|---|---|",
            f"| simulate + write 4 NIfTI files | {total['median_s']:.2f} | {total['min_s']:.2f}-{total['max_s']:.2f} |",
            f"| simulate only (no writing) | {compute['median_s']:.2f} "
            f"| {compute['min_s']:.2f}-{compute['max_s']:.2f} |",
            f"| load the default anatomy (once per run) | {result['anatomy_load_s']:.2f} | |",
            "",
            f"Pinned to one core: {'yes (taskset -c 0)' if result['pinned_to_one_core'] else 'no'}; "
            f"{total['runs']} runs after {total['warmup']} warm-up. Target: at most ~15 s per subject.",
        ]
    )
