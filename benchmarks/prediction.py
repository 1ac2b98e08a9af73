"""Whole-volume prediction of a 260 x 311 x 260 subject (HCP's grid) with the 9-layer, 9-channel network.

`mrsynth.predict.predict_slices` end to end (normalization, mask expansion, BatchNorm folded
into the convolutions, channels_last, batches of 8 whole 260 x 311 slices), in a child
process so that its peak RSS is the prediction's own; compared with the same network
unfolded in NCHW layout, measured in the same run. Untrained weights (speed does not
depend on them).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from .training_step import forward_flops

CHILD = textwrap.dedent("""
    import json, resource, sys, time
    import numpy as np, torch
    from mrsynth import labels
    from mrsynth.models import FCN, ModelInfo
    from mrsynth.predict import predict_slices
    mode = sys.argv[1]
    shape = (260, 260, 311)  # slice-major: 260 axial slices of 260 x 311
    rng = np.random.default_rng(0)
    t1 = rng.uniform(0, 1000, shape).astype(np.float32)
    bits = rng.integers(0, 256, shape, dtype=np.uint8)
    model = FCN(9, 9).eval()
    info = ModelInfo(9, 9, 32, {"method": "robust", "t2_reference_scale": 1.0}, 128, 24, "axial")
    times = []
    for _ in range(int(sys.argv[2])):
        start = time.perf_counter()
        predict_slices(model, info, t1, bits, (1 / 500, 0.0), batch_size=8, optimized=(mode == "optimized"))
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"times": times, "peak_rss_mb": peak}))
""")


def _child(mode: str, runs: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, mode, str(runs)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run() -> dict:
    import statistics

    result = {"gflop": 260 * 260 * 311 * forward_flops(1, 9, 9) / 1e9}
    for mode, runs in (("optimized", 5), ("plain", 3)):
        child = _child(mode, runs)
        times = child["times"]
        result[mode] = {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
                        "runs": runs, "peak_rss_mb": child["peak_rss_mb"]}
    return result


def markdown(result: dict) -> str:
    opt, plain = result["optimized"], result["plain"]
    return "\n".join([
        f"One volume = {result['gflop']:.0f} GFLOP (forward).", "",
        "| path | median s | min-max s | GFLOP/s | peak RSS MB | runs |", "|---|---|---|---|---|---|",
        f"| optimized (folded BN, channels_last) | {opt['median_s']:.1f} | {opt['min_s']:.1f}-{opt['max_s']:.1f} | "
        f"{result['gflop'] / opt['median_s']:.0f} | {opt['peak_rss_mb']:.0f} | {opt['runs']} |",
        f"| plain (eval-mode network, NCHW) | {plain['median_s']:.1f} | {plain['min_s']:.1f}-{plain['max_s']:.1f} | "
        f"{result['gflop'] / plain['median_s']:.0f} | {plain['peak_rss_mb']:.0f} | {plain['runs']} |",
        "", f"Speed-up, same run: {plain['median_s'] / opt['median_s']:.2f}x. Target: <= 20 s, peak RSS <= 2 GB."])
