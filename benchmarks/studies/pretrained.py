"""The shipped pretrained model (`mrsynth predict` without --model), zero-shot and fine-tuned, against a plain lookup
table and `--preset quality`.

Templates: the HCP MNI152 pair (skull-stripped) and the ICBM 2009c pair (whole head), each with its own brain mask;
zero-shot on each, and, trained on the other template, the plain lookup table (the library's `fit_table`: mean T2w of
64 quantile bins of the brain T1w, in brain-median units), `--preset quality` and `--preset finetune` (the pretrained
model fine-tuned).
Simulated heads: the 4 label maps held out of pretraining, each with a T1w sequence outside the training ranges
(MPRAGE TI 1350 ms, flip 14 degrees, with MS-like lesions; spin echo TR 1100 ms, TE 35 ms, with a tumour-like mass)
and, to tell the sequence's effect from the lesion's, the same lesions with a sequence inside them (MPRAGE TI 1000 ms,
flip 8 degrees; spin echo TR 500 ms, TE 15 ms). HCP's T2w is the reference; zero-shot against a lookup table fitted on
a subject of another simulated site (the simulator's HCP-like default protocol, label map 10), with the
lesion-to-white-matter contrast, (lesion / white matter medians) - 1, predicted against true.
Scores inside the brain mask: `psnr_optimal` (the reference in its
brain 99th-percentile units, the prediction times its least-squares gain to it: scale-free), `psnr_p99`,
brain-median PSNR and SSIM; per-tissue MSE in the JSON. Zero-shot seconds: the whole command on a 1 mm head, its
brain mask computed. One figure per case (benchmarks/results/pretrained/). Skipped where ../shared/data is absent.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.fixtures import (
    HCP,
    ICBM,
    KEYS,
    SHARED,
    comparison_figure,
    figures_folder,
    held_out_heads,
    held_out_markdown,
    predicted,
    prepared_template_pair,
    pretrained_weights,
    require_shared,
    table_from,
)

FIGURES = "pretrained"


def _templates(tmp: Path) -> dict:
    from mrsynth.evaluation import Reference, score
    from mrsynth.inference import Model
    from mrsynth.networks import PRETRAINED
    from mrsynth.training import Network, load_config

    subjects = prepared_template_pair(tmp)
    pretrained = Model.load(PRETRAINED)
    out = {}
    for source, target in (("hcp", "icbm"), ("icbm", "hcp")):
        reference, volumes = Reference.from_prepared(subjects[target]), subjects[target].native()
        scores, seconds = {}, {}
        zero = pretrained.predict(subjects[target])
        scores["pretrained, zero-shot"] = score(zero, reference)
        table = predicted(table_from(subjects[source].native()), volumes)
        scores[f"lookup table fitted on {source}"] = score(table, reference)
        for preset in ("quality", "finetune"):
            config = load_config(
                None,
                [
                    f"data.cache={tmp / 'cache'}",
                    f"data.train={source}",
                    f"data.test={target}",
                    "data.max_eval_patches=256",
                ],
                [preset],
            )
            started = time.perf_counter()
            model = Network(config).fit(tmp / f"run-{source}-{preset}", progress=False)
            seconds[preset] = time.perf_counter() - started
            scores[f"--preset {preset} on {source}"] = score(model.predict(subjects[target]), reference)
        out[f"{source} -> {target}"] = {"scores": scores, "train_seconds": seconds}
        comparison_figure(
            volumes.t1,
            volumes.t2,
            volumes.brain,
            {"zero-shot": zero, "lookup table": table},
            figures_folder(FIGURES) / f"template_{target}.png",
            f"{target.upper()} template",
        )
    return out


def _zero_shot_seconds(tmp: Path) -> list[float]:
    """The whole command on the 1 mm ICBM head, its brain mask computed: three runs."""
    times = []
    for k in range(3):
        started = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "mrsynth",
                "predict",
                "--t1",
                str(SHARED / ICBM["t1"]),
                "--out",
                str(tmp / f"icbm{k}.nii.gz"),
                "-q",
            ],
            check=True,
        )
        times.append(time.perf_counter() - started)
    return times


def run() -> dict:
    from mrsynth.inference import Model
    from mrsynth.networks import PRETRAINED

    require_shared("synthseg-label-maps", "icbm2009c", "hcp-mni152")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        seconds = _zero_shot_seconds(tmp)
        result = {
            "pretrained_model": pretrained_weights(),
            "templates": _templates(tmp),
            "simulated": held_out_heads(Model.load(PRETRAINED), FIGURES),
            "zero_shot_seconds": seconds,
            "hcp_files": HCP,
            "icbm_files": ICBM,
        }
    return result


def _row(label: str, scores: dict) -> str:
    cells = " | ".join(f"{scores[k]:.3f}" if k == "ssim_3d" else f"{scores[k]:.2f}" for k in KEYS)
    return f"| {label} | {cells} |"


def _differences(entry: dict) -> str:
    """The acceptance's comparisons in psnr_optimal dB: zero-shot and fine-tuned against the table and quality."""
    scores = {label.split(" fitted on")[0].split(" on ")[0]: s["psnr_optimal"] for label, s in entry["scores"].items()}
    zero, table = scores["pretrained, zero-shot"], scores["lookup table"]
    quality, finetune = scores["--preset quality"], scores["--preset finetune"]
    return (
        f"psnr_optimal differences: zero-shot - table {zero - table:+.2f} dB, zero-shot - quality "
        f"{zero - quality:+.2f} dB; finetune - quality {finetune - quality:+.2f} dB, finetune - table "
        f"{finetune - table:+.2f} dB."
    )


def markdown(result: dict) -> str:
    lines = [
        f"Pretrained model: {result.get('pretrained_model', 'not recorded')}.",
        "",
        f"Zero-shot, the whole command on the 1 mm ICBM head (brain mask computed): median "
        f"{np.median(result['zero_shot_seconds']):.0f} s of {len(result['zero_shot_seconds'])} runs.",
        "",
    ]
    header = "| method | " + " | ".join(KEYS) + " |\n|---|" + "---|" * len(KEYS)
    for direction, entry in result["templates"].items():
        lines += [
            f"**Templates, {direction}** (trained on the first; training seconds: "
            + ", ".join(f"{k} {v:.0f}" for k, v in entry["train_seconds"].items())
            + ")",
            "",
            header,
        ]
        lines += [_row(label, scores) for label, scores in entry["scores"].items()] + ["", _differences(entry), ""]
    lines += held_out_markdown(result["simulated"])
    lines += [
        "",
        "Figures: benchmarks/results/pretrained/ (one per case: T1w, true T2w, each prediction scaled by its "
        "best gain, and its error; lesions outlined).",
    ]
    return "\n".join(lines)
