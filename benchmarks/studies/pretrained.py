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
    MAPS_DIR,
    SHARED,
    figures_folder,
    predicted,
    prepared_template_pair,
    pretrained_weights,
    require_shared,
    table_from,
)

HELD_OUT = (0, 1, 2, 3)  # label maps 1-4 (0-based): never seen in pretraining
OTHER_SITE_MAP = 9  # label map 10: the lookup table's training subject
FIGURES = "pretrained"
KEYS = ("psnr_optimal", "psnr_p99", "psnr", "ssim_3d")


def _cases():
    """Sequences outside the engine's ranges, each with a kind of lesion, then the same inside them."""
    from dataclasses import replace

    from mrsynth.simulate.engine import EngineSettings
    from mrsynth.simulate.pathology import PathologyOdds
    from mrsynth.simulate.signal import MPRAGE, SpinEcho

    settings = EngineSettings(stripped=0.0, random_head=0.0, thick=0.0, ghosting=0.0, gamma=0.0)
    ms = replace(settings, pathology=PathologyOdds(ms=1.0, tumour=0.0))
    tumour = replace(settings, pathology=PathologyOdds(ms=0.0, tumour=1.0))
    return {
        "MPRAGE TI 1350 ms, flip 14 deg, MS-like lesions": (MPRAGE(tr=2600, ti=1350, flip_deg=14.0), ms),
        "spin echo TR 1100 ms, TE 35 ms, tumour-like mass": (SpinEcho(tr=1100, te=35), tumour),
        "MPRAGE TI 1000 ms, flip 8 deg (in the training ranges), MS-like lesions": (
            MPRAGE(tr=2400, ti=1000, flip_deg=8.0),
            ms,
        ),
        "spin echo TR 500 ms, TE 15 ms (in the training ranges), tumour-like mass": (SpinEcho(tr=500, te=15), tumour),
    }


def _scores(prediction, reference_t2, brain, seg=None) -> dict:
    from mrsynth.evaluation import evaluate_volume

    scores = evaluate_volume(prediction.astype(np.float32), reference_t2.astype(np.float32), brain, seg)
    return {k: v for k, v in scores.items() if k in KEYS or k.startswith("mse_")}


def _lesion_contrast(volume, lesions, codes, brain) -> dict:
    """(median in each lesion kind / median in white matter) - 1."""
    from mrsynth import labels
    from mrsynth.simulate.pathology import LESIONS

    bits, _ = labels.tissue_bits(codes, brain)
    white = labels.has_class(bits, "white_matter") & brain & (lesions == 0)
    base = float(np.median(volume[white]))
    return {LESIONS[k]: float(np.median(volume[lesions == k])) / base - 1 for k in np.unique(lesions) if k}


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
        _figure(
            volumes.t1,
            volumes.t2,
            volumes.brain,
            {"zero-shot": zero, "lookup table": table},
            figures_folder(FIGURES) / f"template_{target}.png",
            f"{target.upper()} template",
        )
    return out


def _simulated() -> dict:
    from mrsynth.inference import Model
    from mrsynth.networks import PRETRAINED
    from mrsynth.simulate import Variation, simulate_subject
    from mrsynth.simulate.anatomy import label_map_anatomy, label_map_paths
    from mrsynth.simulate.engine import engine_subject

    maps = label_map_paths(MAPS_DIR)
    other_site = table_from(simulate_subject(label_map_anatomy(maps[OTHER_SITE_MAP]), 4242, 1.0, Variation()))
    pretrained = Model.load(PRETRAINED)
    out = {}
    for n, (case, (sequence, settings)) in enumerate(_cases().items()):
        for index in HELD_OUT:
            subject = engine_subject(maps[index], 9000 + 10 * index + n, settings, sequence=sequence)
            name = f"{case}, map {index + 1}"
            zero = pretrained.predict_volume(subject.t1, subject.affine, mask=subject.brain)
            table = predicted(other_site, subject)
            entry = {
                "zero-shot": _scores(zero, subject.t2, subject.brain, subject.codes),
                "lookup table, another site": _scores(table, subject.t2, subject.brain, subject.codes),
            }
            entry["lesion contrast"] = {
                "true": _lesion_contrast(subject.t2, subject.lesions, subject.codes, subject.brain),
                "zero-shot": _lesion_contrast(zero, subject.lesions, subject.codes, subject.brain),
                "lookup table, another site": _lesion_contrast(table, subject.lesions, subject.codes, subject.brain),
            }
            entry["parameters"] = {"t1w": subject.parameters["t1w"], "lesions": subject.parameters["lesions"]}
            out[name] = entry
            _figure(
                subject.t1,
                subject.t2,
                subject.brain,
                {"zero-shot": zero, "lookup table": table},
                figures_folder(FIGURES) / f"simulated_{n}_map{index + 1}.png",
                name,
                subject.lesions,
            )
    return out


def _figure(t1, t2, brain, predictions: dict, path: Path, title: str, lesions=None) -> None:
    """Axial slice through the lesions (or the middle of the brain): T1w, true T2w, each prediction and its error."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    where = np.argwhere(lesions > 0) if lesions is not None and lesions.any() else np.argwhere(brain)
    z = int(np.median(where[:, 2]))
    scale = lambda v: v / np.percentile(v[brain], 99)  # noqa: E731
    panels = [("T1w", scale(t1)), ("true T2w", scale(t2))]
    for name, volume in predictions.items():
        gain = float(volume[brain] @ scale(t2)[brain] / max(volume[brain] @ volume[brain], 1e-12))
        panels += [(name, volume * gain * brain), (f"{name}: error", np.abs(volume * gain - scale(t2)) * brain)]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 3.2))
    for ax, (label, image) in zip(axes, panels):
        ax.imshow(
            np.rot90(image[:, :, z]),
            cmap="magma" if "error" in label else "gray",
            vmin=0,
            vmax=0.5 if "error" in label else 1.2,
        )
        if lesions is not None and lesions[:, :, z].any():
            ax.contour(np.rot90(lesions[:, :, z] > 0), levels=[0.5], colors="cyan", linewidths=0.5)
        ax.set_title(label, fontsize=8)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)


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
    require_shared("synthseg-label-maps", "icbm2009c", "hcp-mni152")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        seconds = _zero_shot_seconds(tmp)
        result = {
            "pretrained_model": pretrained_weights(),
            "templates": _templates(tmp),
            "simulated": _simulated(),
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
    lines += [
        "**Simulated held-out heads** (label maps 1-4), zero-shot against a lookup table fitted on another "
        "simulated site; lesion contrast: (lesion / white matter medians) - 1, true / zero-shot / table",
        "",
        "| case | zero-shot psnr_optimal | table psnr_optimal | difference | lesion contrast |",
        "|---|---|---|---|---|",
    ]
    for case, entry in result["simulated"].items():
        zero, table = entry["zero-shot"]["psnr_optimal"], entry["lookup table, another site"]["psnr_optimal"]
        contrast = entry["lesion contrast"]
        lesions = "; ".join(
            f"{k} {contrast['true'][k]:.2f} / {contrast['zero-shot'][k]:.2f} / "
            f"{contrast['lookup table, another site'][k]:.2f}"
            for k in contrast["true"]
        )
        lines.append(f"| {case} | {zero:.2f} | {table:.2f} | {zero - table:+.2f} | {lesions} |")
    lines += [
        "",
        "Figures: benchmarks/results/pretrained/ (one per case: T1w, true T2w, each prediction scaled by its "
        "best gain, and its error; lesions outlined).",
    ]
    return "\n".join(lines)
