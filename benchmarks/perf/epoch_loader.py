"""A training epoch through the real data loader vs pure compute, and training peak RSS with 2 vs 20 subjects.

Real loader: `mrsynth.training.trainer` on a prepared cache of simulated 1 mm subjects (9 layers, masks,
128 x 128 patches, batch 32, channels_last), 320 patches per epoch, timed by the trainer's
own epoch clock. Pure compute: the same number of steps of the same model on tensors already
in memory (`training_step`'s timer), in a fresh process with the trainer's allocator tuning.
Peak RSS: a child process that builds the training set over 2 or 20 prepared subjects and
trains one such epoch (ru_maxrss).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import textwrap
from pathlib import Path

PATCHES = 320
RUNS, DEFAULT_RUNS = 5, 3  # fresh processes per figure; medians reported

TRAIN_CHILD = textwrap.dedent("""
    import json, resource, sys, tempfile
    from mrsynth.training import load_config
    from mrsynth.training import train
    cache, ids, out = sys.argv[1], sys.argv[2], tempfile.mkdtemp(dir=sys.argv[3]) + "/run"
    config = load_config(None, [f"data.cache={cache}", f"data.train={ids}", "data.channels=9", "model.layers=9",
                                "optim.epochs=1", "optim.batch_size=32", f"data.max_patches_per_epoch={PATCHES}",
                                "bn_recalibration_batches=2", "seed=0"])
    summary = train(config, out, progress=False)
    print(json.dumps({"train_seconds": summary["train_seconds"],
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
""").replace("PATCHES", str(PATCHES))


COMPUTE_CHILD = textwrap.dedent("""
    import json, sys, time
    from mrsynth.runtime import tune_allocator
    from benchmarks.fixtures import step_timer
    tune_allocator()  # as the trainer does
    step = step_timer(channels_last=True, compile_model=False)
    started = time.perf_counter()
    for _ in range(int(sys.argv[1])):
        step()
    print(json.dumps({"seconds": time.perf_counter() - started}))
""")


def _cache_with(n: int, source: Path, folder: Path) -> str:
    """A cache of ``n`` copies of one prepared subject (distinct ids, distinct files)."""
    ids = []
    for i in range(n):
        target = folder / f"s{i:02d}"
        shutil.copytree(source, target)
        meta = json.loads((target / "subject.json").read_text())
        meta["id"] = target.name
        (target / "subject.json").write_text(json.dumps(meta))
        ids.append(target.name)
    return ",".join(ids)


def _median_of(runs: int, code: str, *args: str, env: dict[str, str] | None = None) -> dict:
    """Each figure's median over ``runs`` fresh child processes."""
    import statistics

    from benchmarks.fixtures import child_json

    samples = [child_json(code, *args, env=env) for _ in range(runs)]
    return {key: statistics.median(s[key] for s in samples) for key in samples[0]}


def run() -> dict:
    from mrsynth.data import prepare_all
    from mrsynth.io import discover
    from mrsynth.simulate import simulate_dataset

    work = Path(tempfile.mkdtemp(prefix="epoch-loader-"))
    simulate_dataset(work / "data", 1, progress=False)
    prepare_all(discover(work / "data"), work / "one", progress=False)
    source = work / "one" / "sim001"
    runs = {}
    for n in (2, 20):
        ids = _cache_with(n, source, work / f"cache{n}")
        runs[n] = _median_of(RUNS, TRAIN_CHILD, str(work / f"cache{n}"), ids, str(work))
    default = _median_of(
        DEFAULT_RUNS, TRAIN_CHILD, str(work / "cache2"), "s00,s01", str(work), env={"MRSYNTH_TUNE_MALLOC": "0"}
    )
    compute = _median_of(RUNS, COMPUTE_CHILD, str(PATCHES // 32))
    shutil.rmtree(work, ignore_errors=True)
    return {
        "patches": PATCHES,
        "runs": RUNS,
        "default_runs": DEFAULT_RUNS,
        "loader_epoch_s": runs[2]["train_seconds"],
        "compute_epoch_s": compute["seconds"],
        "peak_rss_mb": {str(k): v["peak_rss_mb"] for k, v in runs.items()},
        "loader_epoch_s_20": runs[20]["train_seconds"],
        "default_allocator": default,
    }


def markdown(result: dict) -> str:
    rss, default = result["peak_rss_mb"], result["default_allocator"]
    overhead = result["loader_epoch_s"] / result["compute_epoch_s"] - 1
    return "\n".join(
        [
            f"| what ({result['patches']} patches of 128 px, batch 32; median of {result['runs']} processes) "
            "| seconds |",
            "|---|---|",
            f"| epoch through the real loader (2 subjects) | {result['loader_epoch_s']:.1f} |",
            f"| epoch through the real loader (20 subjects) | {result['loader_epoch_s_20']:.1f} |",
            f"| the same steps on in-memory tensors | {result['compute_epoch_s']:.1f} |",
            f"| epoch through the real loader (2 subjects), glibc's default allocator settings "
            f"({result['default_runs']} processes) | "
            f"{default['train_seconds']:.1f} |",
            "",
            f"Loader overhead: {100 * overhead:.1f} % (target: within 5 %). Training peak RSS: "
            f"{rss['2']:.0f} MB with 2 prepared subjects, {rss['20']:.0f} MB with 20 "
            f"({100 * (rss['20'] / rss['2'] - 1):+.1f} %; target: within 10 %). The allocator tuning's price: "
            f"{default['peak_rss_mb']:.0f} MB peak RSS with glibc's defaults (2 subjects), "
            f"{rss['2'] - default['peak_rss_mb']:+.0f} MB with the tuning.",
        ]
    )
