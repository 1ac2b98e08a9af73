"""Simulated cross-validation: 8 subjects from 8 real anatomies, 4 folds, every candidate configuration.

Subjects: `mrsynth simulate --labels ../shared/data/synthseg-label-maps --subjects 8 --voxel-size 1.4`
(the first 8 SynthSeg label maps, each with its own protocol, texture, bias, noise and gain; the
default MNI152 anatomy where the maps are absent). `mrsynth crossval --folds 4` per configuration
(the paper's FCN with `--preset fast`, with and without masks, and `--preset quality`; EPOCHS
epochs of at most PATCHES tiles):
each fold trains on 6 subjects and scores 2 held-out whole volumes against both baselines, fitted
on the same 6. Scores: psnr_p99 and brain-median PSNR, mean over the 8 held-out subjects, and the
paired psnr_p99 difference to the lookup table (intensity-map) with its 95 % bootstrap interval.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from benchmarks.fixtures import MAPS_DIR, RESULTS

MAPS = MAPS_DIR
SUBJECTS, FOLDS, EPOCHS, PATCHES, VOXEL_MM = 8, 4, 4, 1500, 1.4

#: label -> (presets, overrides)
#: The U-Net with BatchNorm and no augmentation: --preset quality until 2026-12-01.
BATCHNORM_UNET = [
    "model.norm=batch",
    "model.lookup=false",
    "optim.clip=0",
    "augment.gamma=0",
    "augment.bias=0",
    "augment.noise=0",
    "augment.flips=false",
]
ROWS = {
    "paper FCN, T1w only (--preset fast)": (["fast"], ["data.channels=1"]),
    "paper FCN + 8 masks (--preset fast)": (["fast"], ["data.channels=9"]),
    "U-Net with BatchNorm, T1w only": (["quality"], ["data.channels=1"] + BATCHNORM_UNET),
    "U-Net with BatchNorm + 8 masks": (["quality"], ["data.channels=9"] + BATCHNORM_UNET),
    "U-Net with BatchNorm, T1w only, 3x the epochs": (
        ["quality"],
        ["data.channels=1", f"optim.epochs={3 * EPOCHS}"] + BATCHNORM_UNET,
    ),
    "--preset quality, T1w only (6 epochs)": (["quality"], ["data.channels=1", "optim.epochs=6"]),
    "--preset quality + 8 masks (6 epochs)": (["quality"], ["data.channels=9", "optim.epochs=6"]),
}


def run(rows: dict[str, tuple[list[str], list[str]]] = ROWS) -> dict:
    from mrsynth.experiments import crossval
    from mrsynth.simulate import simulate_dataset

    results = {
        "subjects": SUBJECTS,
        "folds": FOLDS,
        "epochs": EPOCHS,
        "patches_per_epoch": PATCHES,
        "voxel_mm": VOXEL_MM,
        "anatomy": "synthseg label maps" if MAPS.exists() else "MNI152 default",
        "rows": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        simulate_dataset(
            tmp / "data",
            SUBJECTS,
            labels=MAPS if MAPS.exists() else None,
            voxel_size=VOXEL_MM,
            seed=100,
            progress=False,
        )
        for n, (label, (presets, overrides)) in enumerate(rows.items()):
            started = time.perf_counter()
            common = [
                f"optim.epochs={EPOCHS}",
                f"data.max_patches_per_epoch={PATCHES}",
                "data.max_eval_patches=128",
                "bn_recalibration_batches=50",
            ]
            out = crossval(
                tmp / "data", tmp / f"cv-{n}", FOLDS, presets=presets, progress=False, overrides=common + overrides
            )  # a row's own settings (e.g. more epochs) come last
            results["rows"][label] = {
                "summary": out["summary"],
                "paired": out["paired"],
                "seconds": time.perf_counter() - started,
                "train_seconds": sum(f["train_seconds"] or 0 for f in out["folds"]),
            }
    return results


def run_rows(labels: list[str], note: str) -> dict:
    """Run only the named rows and merge them into the saved result, with a note saying so."""
    import json

    saved = json.loads((RESULTS / "sim_crossval.json").read_text())
    fresh = run({label: ROWS[label] for label in labels})
    saved["rows"].update(fresh["rows"])
    saved["note"] = " ".join(filter(None, [saved.get("note"), note]))
    return saved


def markdown(result: dict) -> str:
    lines = [
        f"{result['subjects']} subjects ({result['anatomy']}, {result['voxel_mm']} mm), {result['folds']} folds, "
        f"{result['epochs']} epochs of at most {result['patches_per_epoch']} tiles per fold.",
        "",
        "| method | psnr_p99 mean ± SD | psnr (brain-median) mean ± SD | network - lookup table, psnr_p99 "
        "(95 % CI) | network - lookup table, brain-median psnr (95 % CI) | better in (psnr_p99, psnr) | "
        "training s (all folds) |",
        "|---|---|---|---|---|---|---|",
    ]
    first = next(iter(result["rows"].values()))
    for baseline in ("intensity-map", "tissue-mean"):
        s = first["summary"][baseline]
        lines.append(
            f"| baseline {baseline} (first row's folds) | {s['psnr_p99']['mean']:.2f} ± {s['psnr_p99']['sd']:.2f} | "
            f"{s['psnr']['mean']:.2f} ± {s['psnr']['sd']:.2f} | | | | |"
        )
    for label, row in result["rows"].items():
        s, paired = row["summary"]["network"], row["paired"]["intensity-map"]
        p, q = paired["psnr_p99"], paired["psnr"]
        lines.append(
            f"| {label} | {s['psnr_p99']['mean']:.2f} ± {s['psnr_p99']['sd']:.2f} | "
            f"{s['psnr']['mean']:.2f} ± {s['psnr']['sd']:.2f} | {p['mean']:+.2f} ({p['ci95'][0]:+.2f} to "
            f"{p['ci95'][1]:+.2f}) | {q['mean']:+.2f} ({q['ci95'][0]:+.2f} to {q['ci95'][1]:+.2f}) | "
            f"{p['network_better_in']}, {q['network_better_in']} of {p['subjects']} | {row['train_seconds']:.0f} |"
        )
    if result.get("note"):
        lines += ["", result["note"]]
    return "\n".join(lines)
