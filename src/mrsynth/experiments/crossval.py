"""Cross-validation over subjects (``mrsynth crossval``): does the network beat a lookup table on unseen subjects?

Per fold: train on the other subjects (any configuration, preset and overrides), fit both
baselines on the same training patches, predict each held-out subject's whole volume with all
three, score them (:func:`mrsynth.evaluate.score`).  Then per subject and method, mean +- SD
over subjects, and the paired difference of the network to each baseline with a bootstrap 95 %
confidence interval (10,000 resamples of the held-out subjects, seeded).  The headline score is
``psnr_p99`` (each volume by its own brain 99th percentile, data range 1); brain-median PSNR is
paired too (the two read a lookup table very differently: docs/training.md), MSE and SSIM listed.

Output folder::

    cache/                 the prepared subjects (when DATA is not already a prepared cache)
    folds/fold-<k>/        a run folder (mrsynth.runs) plus scores.json once the fold is scored
    figures/               per-subject scores; mid slices of every held-out prediction (<id>.png)
                           and an interactive viewer page of the network's (<id>.html)
    report.md, report.html, results.json

Resumable fold by fold: a scored fold is reused, an unfinished run resumes from its checkpoint.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .. import __version__
from ..atomic import write_text
from ..data import is_prepared_cache, list_prepared, prepare_all
from ..errors import InputError
from ..evaluation import Reference, prepared_page, score, write_page
from ..figures import per_subject_figure, prediction_figure
from ..io import discover
from ..logs import log
from ..masks import check_source, refuse_auto_on_cache
from ..networks import package_versions
from ..report import fmt, render_html, render_markdown
from ..training import BASELINES, Method, Network, load_config, runs, with_baselines

NETWORK = "network"
METRICS = ("psnr_p99", "psnr", "mse", "ssim_3d")
HEADLINE = "psnr_p99"
PAIRED = ("psnr_p99", "psnr")  # paired differences: the scale-free score, and brain-median PSNR beside it
BOOTSTRAP_SAMPLES = 10_000


def make_folds(ids: list[str], folds: str | int, seed: int = 0) -> list[list[str]]:
    """Held-out subjects of each fold: ``loo`` (one subject each) or ``K`` groups of a seeded shuffle."""
    if str(folds) == "loo":
        return [[i] for i in ids]
    try:
        k = int(folds)
    except ValueError:
        raise InputError(f"--folds must be 'loo' or a whole number, got {folds!r}") from None
    if not 2 <= k <= len(ids):
        raise InputError(f"--folds {k}: need between 2 and {len(ids)} folds for {len(ids)} subjects")
    order = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
    return [sorted(order[f::k]) for f in range(k)]


def bootstrap_ci(differences: list[float], seed: int = 0, samples: int = BOOTSTRAP_SAMPLES) -> tuple[float, float]:
    """95 % percentile bootstrap interval of the mean of paired differences."""
    values = np.asarray(differences, float)
    draws = np.random.default_rng(seed).integers(0, len(values), (samples, len(values)))
    means = values[draws].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def _subjects(data: Path, out: Path, progress: bool, masks: str = "files") -> tuple[Path, list]:
    if is_prepared_cache(data):
        if masks != "files":
            refuse_auto_on_cache(data)
        cache = data
    else:
        cache = out / ("cache" if masks == "files" else f"cache-{masks}-masks")
        report = prepare_all(discover(data), cache, progress=progress, masks=masks)
        if report.failed:
            log.warning("left out (bad input): %s", "; ".join(f"{r.id}: {r.message}" for r in report.failed))
    subjects = [s for s in list_prepared(cache) if s.has_t2]
    if len(subjects) < 2:
        raise InputError(f"cross-validation needs at least 2 subjects with a T2w, found {len(subjects)}", data)
    return cache, subjects


def _score_fold(methods: dict[str, Method], run_dir: Path, held_out: list, figures: Path, progress: bool) -> dict:
    """Fit every method on the fold's run, predict and score every held-out subject with each."""
    models = {name: method.fit(run_dir, progress) for name, method in methods.items()}
    scores = {}
    for subject in held_out:
        reference = Reference.from_prepared(subject)
        predictions = {name: model.predict(subject) for name, model in models.items()}
        scores[subject.id] = {name: score(volume, reference) for name, volume in predictions.items()}
        volumes = subject.native()
        prediction_figure(
            volumes.t1, volumes.t2, predictions, volumes.brain, figures / f"{subject.id}.png", subject.meta["axis"]
        )
        write_page(
            figures / f"{subject.id}.html",
            prepared_page(predictions[NETWORK], subject),
            f"mrsynth crossval: {subject.id} (held out) predicted by the network",
        )
    return scores


def crossval(
    data: str | Path,
    out: str | Path,
    folds: str | int = "loo",
    config: str | Path | None = None,
    presets: list[str] = (),
    overrides: list[str] = (),
    seed: int = 0,
    progress: bool = True,
    masks: str = "files",
) -> dict:
    """Run (or resume) every fold and write report.md, report.html and results.json.

    ``masks`` other than ``files`` (``auto`` or a method of :mod:`mrsynth.masks`): every subject's brain and
    tissue masks computed from its T1w, for training, prediction and the scored brain region alike.
    """
    started = time.perf_counter()
    out = Path(out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    cache, subjects = _subjects(Path(data), out, progress, check_source(masks))
    by_id = {s.id: s for s in subjects}
    fold_info, per_subject = [], {}
    for k, held_out in enumerate(make_folds(sorted(by_id), folds, seed), start=1):
        training = [i for i in by_id if i not in held_out]
        fold_overrides = [
            f"data.cache={cache}",
            f"data.train={','.join(training)}",
            f"data.test={','.join(held_out)}",
            "data.val=",
            f"seed={seed}",
        ]
        fold_config = load_config(config, list(overrides) + fold_overrides, list(presets))
        info, scores = _fold(k, fold_config, [by_id[i] for i in held_out], out, progress)
        log.info(
            "fold %d/%s (%s): %s held out, %s",
            k,
            folds,
            info["status"],
            ", ".join(held_out),
            "; ".join(f"{i}: network {s[NETWORK][HEADLINE]:.2f} dB" for i, s in scores.items()),
        )
        per_subject.update(scores)
        fold_info.append(info | {"train": training})
    results = summarize(per_subject, seed)
    results.update(
        {
            "data": str(data),
            "folds": fold_info,
            "fold_rule": str(folds),
            "seed": seed,
            "config": asdict(fold_config),
            "presets": list(presets),
            "overrides": list(overrides),
            "versions": package_versions(),
            "mrsynth": __version__,
            "seconds": time.perf_counter() - started,
        }
    )
    _write_report(results, out)
    return results


def _fold(k: int, config, held_out: list, out: Path, progress: bool) -> tuple[dict, dict]:
    """Fold ``k``: its scores per held-out subject, reused when the fold was scored before, and what happened."""
    fold_dir = out / "folds" / f"fold-{k}"
    scores_file = fold_dir / "scores.json"
    began = time.perf_counter()
    if scores_file.exists() and runs.is_finished(fold_dir):
        status, scores = "reused", json.loads(scores_file.read_text())
    else:
        status = runs.state(fold_dir)
        methods = with_baselines(Network(config, NETWORK))
        scores = _score_fold(methods, fold_dir, held_out, out / "figures", progress)
        write_text(scores_file, json.dumps(scores, indent=1) + "\n")
    info = {
        "fold": k,
        "test": [s.id for s in held_out],
        "status": status,
        "run": str(fold_dir.relative_to(out)),
        "seconds": time.perf_counter() - began,
        "train_seconds": runs.read_summary(fold_dir).get("train_seconds"),
    }
    return info, scores


def _write_report(results: dict, out: Path) -> None:
    scores = {i: {m: s[m][HEADLINE] for m in s} for i, s in results["per_subject"].items()}
    figure = per_subject_figure(
        scores, out / "figures" / "per_subject_psnr_p99.png", "brain PSNR, p99 scale (dB)", "held-out subjects"
    )
    blocks = build_report(results, figure, out)
    write_text(out / "report.md", render_markdown(blocks, out))
    write_text(out / "report.html", render_html(blocks, "mrsynth cross-validation"))
    write_text(out / "results.json", json.dumps(results, indent=2) + "\n")


def summarize(per_subject: dict[str, dict[str, dict]], seed: int = 0) -> dict:
    """Mean +- SD per method and metric; paired differences of the network to each baseline with a bootstrap CI."""
    methods = list(next(iter(per_subject.values())))
    summary = {
        m: {metric: _mean_sd([s[m][metric] for s in per_subject.values()]) for metric in METRICS} for m in methods
    }
    paired = {}
    for baseline in BASELINES:
        paired[baseline] = {}
        for metric in PAIRED:
            differences = {i: s[NETWORK][metric] - s[baseline][metric] for i, s in per_subject.items()}
            values = list(differences.values())
            low, high = bootstrap_ci(values, seed)
            paired[baseline][metric] = {
                "differences": differences,
                "mean": float(np.mean(values)),
                "ci95": [low, high],
                "network_better_in": int(sum(v > 0 for v in values)),
                "subjects": len(values),
            }
    return {"per_subject": per_subject, "summary": summary, "paired": paired}


def _mean_sd(values: list) -> dict:
    values = [v for v in values if v is not None]
    return {
        "mean": float(np.mean(values)),
        "sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
        "n": len(values),
    }


def build_report(results: dict, figure: Path, out: Path) -> list:
    """The report as blocks (mrsynth.report); every number from ``results``."""
    methods = list(results["summary"])
    subjects = list(results["per_subject"])
    blocks = [
        ("h1", "mrsynth cross-validation"),
        (
            "p",
            f"Data: {results['data']}; {len(results['folds'])} folds ({results['fold_rule']}), "
            f"{len(subjects)} held-out subjects; presets: {', '.join(results['presets']) or 'none'}; "
            f"overrides: {' '.join(results['overrides']) or 'none'}; seed {results['seed']}. "
            "Scores inside each held-out subject's brain mask. psnr_p99: each volume divided by its own "
            "brain 99th percentile, PSNR with data range 1 (dB, higher is better).",
        ),
    ]
    for metric in METRICS:
        rows = [["subject"] + methods]
        rows += [[i] + [fmt(results["per_subject"][i][m][metric]) for m in methods] for i in subjects]
        rows.append(
            ["mean ± SD"]
            + [
                f"{fmt(results['summary'][m][metric]['mean'])} ± {fmt(results['summary'][m][metric]['sd'])}"
                for m in methods
            ]
        )
        blocks += [("h2", f"{metric} per held-out subject"), ("table", rows)]
    rows = [["baseline", "score", "mean difference (network - baseline, dB)", "95 % bootstrap CI", "network better in"]]
    for baseline, by_metric in results["paired"].items():
        for metric, p in by_metric.items():
            rows.append(
                [
                    baseline,
                    metric,
                    fmt(p["mean"]),
                    f"{fmt(p['ci95'][0])} to {fmt(p['ci95'][1])}",
                    f"{p['network_better_in']} of {p['subjects']}",
                ]
            )
    blocks += [("h2", "The network against the baselines (paired by subject)"), ("table", rows), ("img", figure)]
    rows = [["fold", "held out", "training subjects", "status", "training s"]]
    rows += [
        [str(f["fold"]), ", ".join(f["test"]), str(len(f["train"])), f["status"], fmt(f["train_seconds"])]
        for f in results["folds"]
    ]
    blocks += [("h2", "Folds"), ("table", rows)]
    for i in subjects:
        if (out / "figures" / f"{i}.png").exists():
            blocks += [("h2", f"Held-out subject {i}: mid slice"), ("img", out / "figures" / f"{i}.png")]
        if (out / "figures" / f"{i}.html").exists():
            blocks += [("p", f"Interactive viewer (three planes, linked crosshairs, error map): figures/{i}.html")]
    return blocks
