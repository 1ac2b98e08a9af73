"""Training-step throughput of the paper's 9-layer, 9-channel network on 128 x 128 patches, batch 32, fp32.

For each training mode the trainer offers (eager NCHW, channels_last, with and without
the allocator tuning of `mrsynth.runtime`, and with torch.compile): patches per second,
GFLOP/s and percent of the measured fp32 matmul peak. Each mode runs in its own process
(the allocator setting is process-wide). A step costs 3x the forward FLOPs (forward, input
gradient, weight gradient). Synthetic tensors, so this is pure compute; `epoch_loader`
compares it with the real data loader.
"""

from __future__ import annotations

import time

import torch

from benchmarks.fixtures import child_json, repeat, step_timer

BATCH, SIZE, CHANNELS, LAYERS = 32, 128, 9, 9


def forward_flops(size: int = SIZE, channels: int = CHANNELS, layers: int = LAYERS, width: int = 32) -> float:
    """Multiply-adds x 2 of one forward pass on one patch."""
    per_pixel = channels * 9 * width + (layers - 2) * width * 9 * width + width * 9
    return 2.0 * per_pixel * size * size


def matmul_peak(n: int = 4096) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    timing = repeat(lambda: a @ b, runs=5, warmup=2)
    return 2 * n**3 / timing["median_s"] / 1e9


MODES = {  # name: (channels_last, torch.compile, allocator tuned)
    "eager NCHW": (False, False, False),
    "channels_last": (True, False, False),
    "channels_last + tuned allocator (trainer default)": (True, False, True),
    "channels_last + tuned allocator + torch.compile": (True, True, True),
}
MEASURE_CHILD = (
    "import json, sys; from benchmarks.perf.training_step import measure; "
    "print(json.dumps(measure(sys.argv[1] == '1', sys.argv[2] == '1')))"
)


def measure(channels_last: bool, compile_model: bool) -> dict:
    """Step timings in this process (allocator tuned unless MRSYNTH_TUNE_MALLOC=0)."""
    from mrsynth.runtime import tune_allocator

    tuned = tune_allocator()
    step = step_timer(channels_last, compile_model, BATCH, SIZE, LAYERS)
    started = time.perf_counter()
    step()  # first call: compilation where compiled
    first = time.perf_counter() - started
    timing = repeat(step, runs=7, warmup=2)
    return {"first_step_s": first, **timing, "patches_per_s": BATCH / timing["median_s"], "allocator_tuned": tuned}


def measure_in_child(channels_last: bool, compile_model: bool, tuned: bool) -> dict:
    """``measure`` in a fresh process, so that the allocator setting is this mode's own."""
    return child_json(
        MEASURE_CHILD, str(int(channels_last)), str(int(compile_model)), env={"MRSYNTH_TUNE_MALLOC": str(int(tuned))}
    )


def run() -> dict:
    peak = matmul_peak()
    modes = {}
    for name, (channels_last, compiled, tuned) in MODES.items():
        mode = measure_in_child(channels_last, compiled, tuned)
        mode["gflops"] = mode["patches_per_s"] * 3 * forward_flops() / 1e9
        mode["percent_of_peak"] = 100 * mode["gflops"] / peak
        modes[name] = mode
    return {
        "matmul_peak_gflops": peak,
        "threads": torch.get_num_threads(),
        "modes": modes,
        "step_gflop_per_patch": 3 * forward_flops() / 1e9,
    }


def markdown(result: dict) -> str:
    lines = [
        f"fp32 matmul peak (4096^2, {result['threads']} threads): {result['matmul_peak_gflops']:.0f} GFLOP/s; "
        f"a training step costs {result['step_gflop_per_patch']:.2f} GFLOP per patch, so the limit is "
        f"{result['matmul_peak_gflops'] / result['step_gflop_per_patch']:.1f} patches/s.",
        "",
        "| mode | patches/s (median) | min-max step s | GFLOP/s | % of peak | first step s |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in result["modes"].items():
        lines.append(
            f"| {name} | {m['patches_per_s']:.1f} | {m['min_s']:.2f}-{m['max_s']:.2f} | {m['gflops']:.0f} | "
            f"{m['percent_of_peak']:.0f} | {m['first_step_s']:.1f} |"
        )
    base = result["modes"]["eager NCHW"]["patches_per_s"]
    lines += [
        "",
        "Speed-up over eager NCHW, same run: "
        + ", ".join(
            f"{name} {m['patches_per_s'] / base:.2f}x" for name, m in result["modes"].items() if name != "eager NCHW"
        )
        + ".",
    ]
    return "\n".join(lines)
