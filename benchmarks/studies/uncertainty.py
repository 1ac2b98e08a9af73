"""Where to trust a synthetic T2w: how well candidate uncertainty maps rank voxels by their error, on the two template
pairs (brain masks given) and the two raw clinical pairs of `shared/data/open-ms-clinical` (masks computed from the
T1W, as a user has them), the shipped model zero-shot.

For each case and map: the Spearman correlation between the map and the absolute error inside the brain (the error
of the prediction times its least-squares gain, against the reference in its brain 99th-percentile units: the
scale of `psnr_optimal`), and the share of the squared error that the 10 % most uncertain voxels hold (10 % if the
map knew nothing); the time of the prediction with its map against without (the map's own time a median of 3).
Targets (issue 42): Spearman >= 0.4 and share >= 25 % everywhere, at no more than twice a plain prediction's time.
The library's map (`mrsynth.inference.uncertainty`, "local spread") is the first row; the others are the
candidates it was chosen among: disagreement with the prediction of the left-right flipped input (one more network
pass), with the prediction of a contrast-perturbed input (T1w^0.8), the prediction's fine detail (its difference
from itself smoothed by 3 mm), its intensity, and the nearness to the brain mask's edge.  One figure per
case (benchmarks/results/uncertainty/).  Skipped where ../shared/data is absent.
"""

from __future__ import annotations

import time
from dataclasses import replace
from functools import partial

import numpy as np

from benchmarks.fixtures import (
    HCP,
    ICBM,
    figures_folder,
    pretrained_weights,
    repeat,
    require_shared,
    template_volumes,
)

FIGURES = "uncertainty"
LIBRARY = "local spread (the library's map)"
TARGETS = {"spearman": 0.4, "top10_share": 0.25, "cost": 2.0}


def _cases():
    """(name, T1w, reference T2w, brain mask, affine) for each template pair and each clinical pair."""
    from benchmarks.studies.real_scans import CASES, Scan

    for name, files in (("HCP template", HCP), ("ICBM template", ICBM)):
        pair = template_volumes(files)
        yield name, pair.t1, pair.t2, pair.brain, pair.affine
    for case, prefix in CASES.items():
        scan = Scan(prefix)
        yield f"{case} (raw clinical)", scan.t1, scan.t2, scan.brain, scan.affine


def ranking(uncertainty: np.ndarray, error: np.ndarray) -> dict:
    """Spearman of a map against the absolute error (inside the brain, both flattened) and the top-10 % share."""
    from scipy import stats

    squared = error.astype(np.float64) ** 2
    top = uncertainty >= np.quantile(uncertainty, 0.9)
    return {
        "spearman": float(stats.spearmanr(uncertainty, error).statistic),
        "top10_share": float(squared[top].sum() / squared.sum()),
    }


def optimal_error(prediction: np.ndarray, reference: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """|gain x prediction - reference| inside the brain, the reference in its brain 99th-percentile units and the
    gain the least-squares one (the scale of ``psnr_optimal``)."""
    ref = reference[brain].astype(np.float64) / np.percentile(reference[brain], 99)
    pred = prediction[brain].astype(np.float64)
    return np.abs(pred * (pred @ ref) / (pred @ pred) - ref)


def _candidates(model, t1, affine, brain, t2w, library_map) -> dict:
    """Each candidate map inside the brain (flattened), the library's first."""
    from scipy import ndimage

    from mrsynth.inference import Model

    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    flipped = Model(model.network, replace(model.info, spec=replace(model.info.spec, flips=((0,),))), model.folder)
    contrast = model.predict_volume(np.maximum(t1, 0) ** 0.8, affine, mask=brain)
    return {
        LIBRARY: library_map[brain],
        "flip disagreement": np.abs(t2w - flipped.predict_volume(t1, affine, mask=brain))[brain],
        "contrast disagreement (T1w^0.8)": np.abs(t2w - contrast)[brain],
        "fine detail (3 mm)": np.abs(t2w - ndimage.gaussian_filter(t2w, [3 / z for z in zooms]))[brain],
        "intensity": t2w[brain],
        "nearness to the mask's edge": -ndimage.distance_transform_edt(brain, sampling=zooms)[brain],
    }


def run() -> dict:
    from mrsynth.inference import Model
    from mrsynth.inference.uncertainty import METHOD, predict_with_uncertainty, uncertainty_map
    from mrsynth.networks import PRETRAINED

    require_shared("open-ms-clinical", "hcp-mni152", "icbm2009c")
    model = Model.load(PRETRAINED)
    result = {"pretrained_model": pretrained_weights(), "method": METHOD, "cases": {}}
    for name, t1, t2, brain, affine in _cases():
        started = time.perf_counter()
        t2w, uncertainty = predict_with_uncertainty(model.network, model.info, t1, affine, brain)
        seconds = time.perf_counter() - started
        zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
        timed = partial(uncertainty_map, t2w, brain, zooms)
        map_seconds = repeat(timed, runs=3, warmup=0)["median_s"]
        error = optimal_error(t2w, t2, brain)
        maps = _candidates(model, t1, affine, brain, t2w, uncertainty)
        result["cases"][name] = {
            "maps": {label: ranking(values, error) for label, values in maps.items()},
            "seconds_with_map": seconds,
            "seconds_map": map_seconds,
        }
        _figure(name, t1, t2, brain, t2w, uncertainty)
    return result


def _figure(name: str, t1, t2, brain, t2w, uncertainty) -> None:
    """An axial slice through the middle of the brain: T1w, reference, synthetic T2w, |error| and the map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    z = int(np.median(np.argwhere(brain)[:, 2]))
    ref = t2 / np.percentile(t2[brain], 99)
    gain = float(t2w[brain] @ ref[brain] / (t2w[brain] @ t2w[brain]))
    panels = [
        ("T1w", t1 / np.percentile(t1[brain], 99), "gray", 1.2),
        ("reference T2w", ref, "gray", 1.2),
        ("synthetic T2w", t2w * gain, "gray", 1.2),
        ("|error|", np.abs(t2w * gain - ref) * brain, "magma", 0.5),
        ("uncertainty (local spread)", uncertainty * gain, "magma", 0.5),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.7 * len(panels), 3.3))
    for ax, (label, image, colours, high) in zip(axes, panels):
        ax.imshow(np.rot90(image[:, :, z]), cmap=colours, vmin=0, vmax=high)
        ax.set_title(label, fontsize=8)
        ax.axis("off")
    fig.suptitle(name, fontsize=9)
    fig.savefig(figures_folder(FIGURES) / f"{name.split()[0]}.png", dpi=80, bbox_inches="tight")
    plt.close(fig)


def markdown(result: dict) -> str:
    lines = [f"Pretrained model: {result['pretrained_model']}. The library's map: {result['method']}.", ""]
    names = list(result["cases"])
    lines += ["| map | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for label in next(iter(result["cases"].values()))["maps"]:
        cells = [
            f"{c['maps'][label]['spearman']:.2f} / {100 * c['maps'][label]['top10_share']:.0f} %"
            for c in result["cases"].values()
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "Each cell: Spearman with the absolute error / share of the squared error in the top 10 %.", ""]
    verdicts = []
    for name, case in result["cases"].items():
        own = case["maps"][LIBRARY]
        plain = case["seconds_with_map"] - case["seconds_map"]
        cost = case["seconds_with_map"] / plain
        met = [
            f"Spearman {own['spearman']:.2f} ({'met' if own['spearman'] >= TARGETS['spearman'] else 'not met'}, "
            f"target {TARGETS['spearman']})",
            f"top-10 % share {100 * own['top10_share']:.0f} % "
            f"({'met' if own['top10_share'] >= TARGETS['top10_share'] else 'not met'}, target 25 %)",
            f"time {cost:.2f}x a plain prediction ({plain:.1f} s, the map {case['seconds_map']:.2f} s; "
            f"{'met' if cost <= TARGETS['cost'] else 'not met'}, target <= 2x)",
        ]
        verdicts.append(f"- {name}: " + "; ".join(met) + ".")
    lines += ["The library's map against the targets:", ""] + verdicts
    lines += ["", "Figures: benchmarks/results/uncertainty/ (one per case)."]
    return "\n".join(lines)
