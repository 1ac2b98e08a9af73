"""Whole-volume prediction of a 260 x 311 x 260 subject (HCP's grid) with the 9-layer, 9-channel network.

`mrsynth.predict.predict_slices` end to end (normalization, mask expansion, BatchNorm folded
into the convolutions, channels_last, batches of 8 whole 260 x 311 slices, the allocator
tuning of `mrsynth.runtime`), each path in its own child process so that its peak RSS and
allocator setting are its own; compared in the same run with the same fast path on glibc's
default allocator settings and with the plain network (unfolded, NCHW, default allocator).
Untrained weights (speed does not depend on them).
"""

from __future__ import annotations

import textwrap

from .common import child_json
from .training_step import forward_flops

PATHS = {  # name: (optimized, allocator tuned, runs)
    "optimized (folded BN, channels_last, tuned allocator)": (True, True, 5),
    "optimized, default allocator": (True, False, 3),
    "plain (eval-mode network, NCHW, default allocator)": (False, False, 3),
}

CHILD = textwrap.dedent("""
    import json, resource, sys, time
    import numpy as np, torch
    from mrsynth import labels
    from mrsynth.modelfile import ModelInfo
    from mrsynth.networks import FCN
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


def run() -> dict:
    import statistics

    result = {"gflop": 260 * 260 * 311 * forward_flops(1, 9, 9) / 1e9, "paths": {}}
    for name, (optimized, tuned, runs) in PATHS.items():
        child = child_json(CHILD, "optimized" if optimized else "plain", str(runs),
                           env={"MRSYNTH_TUNE_MALLOC": str(int(tuned))})
        times = child["times"]
        result["paths"][name] = {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
                                 "runs": runs, "peak_rss_mb": child["peak_rss_mb"]}
    return result


def markdown(result: dict) -> str:
    paths = result["paths"]
    lines = [f"One volume = {result['gflop']:.0f} GFLOP (forward).", "",
             "| path | median s | min-max s | GFLOP/s | peak RSS MB | runs |", "|---|---|---|---|---|---|"]
    for name, p in paths.items():
        lines.append(f"| {name} | {p['median_s']:.1f} | {p['min_s']:.1f}-{p['max_s']:.1f} | "
                     f"{result['gflop'] / p['median_s']:.0f} | {p['peak_rss_mb']:.0f} | {p['runs']} |")
    fast = paths[next(iter(PATHS))]["median_s"]
    lines += ["", "Speed-up of the default path, same run: " + ", ".join(
        f"{p['median_s'] / fast:.2f}x over {name}" for name, p in list(paths.items())[1:]) +
        ". Target: <= 20 s, peak RSS <= 2 GB."]
    return "\n".join(lines)
