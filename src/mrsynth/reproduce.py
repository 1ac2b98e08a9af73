"""Reproduce the paper's experiments in one command: Tables 1-3 and Figures 3-5 (``mrsynth reproduce``).

Subjects (sorted ids): the first is the single training subject (Table 1 within-subject,
Table 2), the next five are the test subjects of Tables 2 and 3, and Table 3 trains on the
first plus as many of the rest as the scale allows (the paper: 50).

Runs are cached by a hash of their configuration: re-running with the same ``--out``
reuses finished runs and resumes unfinished ones from their checkpoints.

Scales (every reduction of ``small`` and why the comparison stays fair):

``paper``
    The paper's settings on the user's data: 128 x 128 patches at stride 24, batch 32 and 20
    epochs for one training subject, batch 128 and 8 epochs for several, every patch every
    epoch, the paper's mean-subtraction normalization.  Learning rate 1e-3 instead of 0.1
    (0.1 does not train: docs/training.md).  Simulated default data at 0.7 mm.
``small`` (default; 2-core CPU, within 45 minutes)
    16 simulated subjects at 1.4 mm instead of HCP's 0.7 mm, with 64 x 64 patches at stride
    12: each patch covers the same 90 mm of anatomy as the paper's 128 x 128 at 0.7 mm, with
    4x fewer pixels.  Every run sees the same number of patches (1,024 random training
    patches per epoch, 8 epochs, batch 32), so models differ only in architecture, input
    and training subjects - the paper's three factors.  Table 3 uses 11 training subjects
    instead of 50.  Test losses use a fixed seeded subset of 512 test patches per run, the
    same subset for every model of a table.  Normalization is the robust per-subject one,
    because simulated subjects have deliberately different global gains, which the paper's
    mean subtraction (made for consistently scaled HCP data) cannot absorb.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from . import __version__, runs
from .atomic import write_text
from .baselines import KINDS as BASELINE_KINDS, fit_for_run
from .cache import list_prepared, prepare_all
from .config import TrainConfig, load_config, to_toml
from .errors import InputError
from .evaluate import Reference, score
from .metrics import patch_losses
from .modelfile import load_model, package_versions
from .predict import predict_prepared
from .report import fmt, pct, render_html, render_markdown
from .runs import load_run_data
from .subjects import discover
from .train import train_or_reuse
from .viewer import prepared_page, write_page

#: The paper's loss values (section 5.2, Tables 1-3), keyed by (layers, input).
PAPER = {
    "table1": {(3, "T1w"): 12795, (3, "T1w + masks"): 10664, (9, "T1w"): 5177, (9, "T1w + masks"): 4091},
    "table2": {(3, "T1w"): 20385, (3, "T1w + masks"): 16627, (9, "T1w"): 12643, (9, "T1w + masks"): 9783},
    "table3": {(9, "T1w"): 9093, (9, "T1w + masks"): 7728},
}
INPUTS = {"T1w": 1, "T1w + masks": 9}


@dataclass(frozen=True)
class Scale:
    name: str
    subjects: int  # simulated when no --data
    voxel_size: float
    patch_size: int
    stride: int
    epochs_one: int
    epochs_many: int
    batch_one: int
    batch_many: int
    patches_per_epoch: int  # 0: all
    eval_patches: int  # 0: all
    volume_subjects: int  # test subjects scored as whole volumes
    many_subjects: int  # training subjects of Table 3
    norm: str
    recalibration_batches: int = 50


SCALES = {
    "paper": Scale("paper", subjects=56, voxel_size=0.7, patch_size=128, stride=24, epochs_one=20, epochs_many=8,
                   batch_one=32, batch_many=128, patches_per_epoch=0, eval_patches=0, volume_subjects=5,
                   many_subjects=50, norm="paper", recalibration_batches=100),
    "small": Scale("small", subjects=16, voxel_size=1.4, patch_size=64, stride=12, epochs_one=8, epochs_many=8,
                   batch_one=32, batch_many=32, patches_per_epoch=1024, eval_patches=512, volume_subjects=5,
                   many_subjects=11, norm="robust", recalibration_batches=32),
    # for the test suite only: fixture-sized subjects, a few steps per run
    "tiny": Scale("tiny", subjects=8, voxel_size=3.0, patch_size=16, stride=8, epochs_one=2, epochs_many=2,
                  batch_one=16, batch_many=16, patches_per_epoch=64, eval_patches=64, volume_subjects=2,
                  many_subjects=3, norm="robust", recalibration_batches=4),
}


def assign_subjects(ids: list[str], scale: Scale) -> dict:
    if len(ids) < 7:
        raise InputError(f"the experiment grid needs at least 7 subjects with a T2w (1 training, 5 test, "
                         f"1 more for Table 3); found {len(ids)}")
    ids = sorted(ids)
    one, test = ids[0], ids[1:6]
    many = [one] + ids[6:6 + scale.many_subjects - 1]
    return {"one": one, "test": test, "many": many}


def _run_configs(cache: Path, scale: Scale, subjects: dict, seed: int) -> dict[str, TrainConfig]:
    common = [f"data.cache={cache}", f"data.patch_size={scale.patch_size}", f"data.stride={scale.stride}",
              f"data.norm={scale.norm}", f"data.max_patches_per_epoch={scale.patches_per_epoch}",
              f"data.max_eval_patches={scale.eval_patches}", f"seed={seed}", "optim.lr=0.001",
              f"bn_recalibration_batches={scale.recalibration_batches}", "val_recalibration_batches=4"]
    one = [f"optim.epochs={scale.epochs_one}", f"optim.batch_size={scale.batch_one}"]
    many = [f"optim.epochs={scale.epochs_many}", f"optim.batch_size={scale.batch_many}"]
    test = f"data.test={','.join(subjects['test'])}"
    configs = {}
    for layers in (3, 9):
        for inputs, channels in INPUTS.items():
            model = [f"model.layers={layers}", f"data.channels={channels}"]
            tag = f"L{layers}-{'masks' if channels > 1 else 'none'}"
            configs[f"table1-{tag}"] = load_config(None, common + one + model + [
                "data.split=within", f"data.subject={subjects['one']}"])
            configs[f"table2-{tag}"] = load_config(None, common + one + model + [
                f"data.train={subjects['one']}", test])
            if layers == 9:
                configs[f"table3-{tag}"] = load_config(None, common + many + model + [
                    f"data.train={','.join(subjects['many'])}", test])
    return configs


def config_hash(config: TrainConfig) -> str:
    return hashlib.sha256(to_toml(config).encode()).hexdigest()[:10]


def _experiment(name: str) -> tuple[str, int, str]:
    table, tag = name.split("-", 1)
    layers, kind = tag.split("-")
    return table, int(layers[1:]), "T1w + masks" if kind == "masks" else "T1w"


def _reference_volumes(subjects: list, count: int) -> dict:
    """The first ``count`` test subjects with their references (native order), read once."""
    return {subject.id: (subject, Reference.from_prepared(subject)) for subject in subjects[:count]}


def _score_run(folder: Path, config: TrainConfig, references: dict, scale: Scale, seed: int) -> dict:
    """Test patch losses of the network and the baselines; whole-volume scores for across-subject runs.

    The network's patch losses are the ones training computed at export (same model, same
    seeded test patches); the baselines are scored on those same patches here.
    """
    data = load_run_data(folder, config)
    summary = runs.read_summary(folder)
    models = {"network": folder / runs.MODEL}
    if config.data.channels > 1 and config.model.layers == 9:  # baselines: once per table
        models.update(fit_for_run(folder))
    scores = {}
    for key, path in models.items():
        model, info = load_model(path)
        if key == "network":
            patch = {"mse": summary["test_loss"], "mse_brain": summary["test_loss_brain"],
                     "patches": summary["test_patches"]}
        else:
            patch = patch_losses(model, data.test, 32, "cpu", scale.eval_patches, seed)
        entry = {"patch": patch}
        if data.split.kind == "across":
            volumes = {subject_id: score(predict_prepared(model, info, subject), reference)
                       for subject_id, (subject, reference) in references.items()}
            entry["volume"] = {k: float(np.mean([v[k] for v in volumes.values()])) for k in ("mse", "psnr", "psnr_p99", "ssim_3d")}
            entry["volume_subjects"] = list(volumes)
        scores[key] = entry
    return scores


# --------------------------------------------------------------------------- figures


def _figure_patches(config: TrainConfig, folder: Path, count: int = 4) -> list[int]:
    """Four fixed test patches of the first test subject: the middle slice, most brain, spread out."""
    data = load_run_data(folder, config)
    first = data.test.parts[0]
    per_slice = len(first.rows) * len(first.cols)
    middle = first.subject.stored_shape[0] // 2
    candidates = list(range(middle * per_slice, (middle + 1) * per_slice))
    brain = data.test.brain_windows(candidates).mean(axis=(1, 2)).tolist()
    ranked = [c for _, c in sorted(zip(brain, candidates), reverse=True)]
    return sorted(ranked[: count * 2][::2])


def _patch_figure(folders: dict[str, Path], configs: dict[str, TrainConfig], names: list[str], items: list[int],
                  path: Path, title: str) -> Path:
    from .figures import patch_grid_figure

    inputs, target = load_run_data(folders[names[-1]], configs[names[-1]]).test[items]
    columns = [("(a) T1w", inputs[:, 0].numpy()), ("(b) true T2w", target[:, 0].numpy())]
    for letter, name in zip("cdef", names):
        model, _ = load_model(folders[name] / runs.MODEL)
        run_inputs, _ = load_run_data(folders[name], configs[name]).test[items]
        with torch.no_grad():
            prediction = model(run_inputs)[:, 0].numpy()
        _, layers, kind = _experiment(name)
        columns.append((f"({letter}) {layers} layers, {kind}", prediction))
    rows = [[(label, images[row]) for label, images in columns] for row in range(len(items))]
    return patch_grid_figure(rows, path, title)


# --------------------------------------------------------------------------- report


def reduction(before: float, after: float) -> float:
    """Relative reduction of the loss from ``before`` to ``after`` (positive: lower is better)."""
    return (before - after) / before


def _comparisons(tables: dict) -> list[dict]:
    """The paper's three effects, paper vs ours, with a verdict computed from the signs."""
    rows = []

    def add(effect, table, before, after):
        paper_before, paper_after = PAPER[table].get(before[:2]), PAPER[table].get(after[:2])
        ours_before, ours_after = tables[table][before], tables[table][after]
        paper = reduction(paper_before, paper_after)
        ours = reduction(ours_before, ours_after)
        rows.append(_comparison(effect, table, paper, ours))

    for table in ("table1", "table2"):
        for layers in (3, 9):
            add(f"masks vs T1w only, {layers} layers", table, (layers, "T1w", "network"), (layers, "T1w + masks", "network"))
        for kind in INPUTS:
            add(f"9 vs 3 layers, {kind}", table, (3, kind, "network"), (9, kind, "network"))
    add("masks vs T1w only, 9 layers", "table3", (9, "T1w", "network"), (9, "T1w + masks", "network"))
    for kind in INPUTS:
        paper = reduction(PAPER["table2"][(9, kind)], PAPER["table3"][(9, kind)])
        ours = reduction(tables["table2"][(9, kind, "network")], tables["table3"][(9, kind, "network")])
        rows.append(_comparison(f"many vs 1 training subjects, 9 layers, {kind}", "table2->table3", paper, ours))
    return rows


def _comparison(effect: str, table: str, paper: float, ours: float) -> dict:
    """One effect: both loss reductions, whether they agree in sign, and ours as a fraction of the paper's size."""
    return {"effect": effect, "table": table, "paper_reduction": paper, "ours_reduction": ours,
            "same_direction": bool(np.sign(paper) == np.sign(ours)),
            "size_ratio": ours / paper if paper else None}


def load_compared(path: str | Path, label: str) -> dict:
    """The effects of an earlier reproduction (its folder or ``results.json``), to report beside this one's.

    For example a run made with an earlier simulator, or on other data: each effect's size
    relative to the paper's, before and after, shows what the change did to fidelity.
    """
    path = Path(path)
    path = path / "results.json" if path.is_dir() else path
    try:
        earlier = json.loads(path.read_text())
        comparisons = {(c["effect"], c["table"]): _comparison(c["effect"], c["table"], c["paper_reduction"],
                                                              c["ours_reduction"])
                       for c in earlier["comparisons"]}
    except FileNotFoundError:
        raise InputError("no reproduction results here (expected the folder of an earlier `mrsynth reproduce` "
                         "or its results.json)", path) from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InputError(f"not the results of a reproduction ({type(error).__name__}: {error})", path) from None
    return {"label": label, "source": str(path), "data": earlier.get("data"), "mrsynth": earlier.get("mrsynth"),
            "scale": (earlier.get("scale") or {}).get("name"), "comparisons": list(comparisons.values())}


def _median_ratio(comparisons: list[dict]) -> float | None:
    ratios = [c["size_ratio"] for c in comparisons if c.get("size_ratio") is not None]
    return float(np.median(ratios)) if ratios else None


def _table_blocks(table: str, title: str, results: dict) -> list:
    rows = [["model", "paper loss", "our test patch MSE", "our brain-pixel MSE", "our volume PSNR (brain)",
             "our volume PSNR, p99 scale (brain)", "our volume SSIM (brain)"]]
    for key, scores in results["tables_detail"][table].items():
        paper = PAPER[table].get(tuple(scores["paper_key"])) if scores.get("paper_key") else None
        volume = scores.get("volume") or {}
        rows.append([key, fmt(paper), fmt(scores["patch"]["mse"]), fmt(scores["patch"]["mse_brain"]),
                     fmt(volume.get("psnr")), fmt(volume.get("psnr_p99")), fmt(volume.get("ssim_3d"))])
    return [("h2", title), ("table", rows)]


def build_report(results: dict, figures: dict[str, Path]) -> list:
    """The report as blocks (heading, paragraph, table, image); all text computed from ``results``."""
    units = results["units"]
    blocks = [("h1", "mrsynth: reproduction of Alkan, Cocjin & Weitz, Tables 1-3 and Figures 3-5"),
              ("p", f"Scale {results['scale']['name']}; data: {results['data']}; {len(results['runs'])} training "
                    f"runs; loss units: {units}. The paper's losses are MSE in HCP T2w intensity units, so "
                    "compare relative changes, not absolute values."),
              ("p", "Every network and baseline of a table is scored on the same test patches; volume scores "
                    "are whole predicted test volumes, inside the brain mask (within-subject runs have test "
                    "patches, not test volumes).")]
    blocks += _table_blocks("table1", "Table 1: within-subject (one subject, patches split 80/1/19)", results)
    blocks += _table_blocks("table2", "Table 2: across-subject, 1 training subject, 5 test subjects", results)
    blocks += _table_blocks("table3", f"Table 3: across-subject, {len(results['subjects']['many'])} training "
                                      "subjects, the same 5 test subjects", results)
    compared = results.get("compared_with")
    earlier = {(c["effect"], c["table"]): c for c in compared["comparisons"]} if compared else {}
    header = ["effect", "table", "paper: loss reduction", "ours: loss reduction", "ours / paper (effect size)",
              "same direction"]
    if compared:
        header += [f"{compared['label']}: loss reduction", f"{compared['label']}: ours / paper",
                   f"{compared['label']}: same direction"]
    rows = [header]
    for c in results["comparisons"]:
        row = [c["effect"], c["table"], pct(c["paper_reduction"]), pct(c["ours_reduction"]),
               fmt(c.get("size_ratio")), "yes" if c["same_direction"] else "no"]
        if compared:
            e = earlier.get((c["effect"], c["table"]))
            row += ["-", "-", "-"] if e is None else [pct(e["ours_reduction"]), fmt(e["size_ratio"]),
                                                      "yes" if e["same_direction"] else "no"]
        rows.append(row)
    agree = sum(c["same_direction"] for c in results["comparisons"])
    blocks += [("h2", "The paper's findings, checked"), ("table", rows),
               ("p", f"{agree} of {len(results['comparisons'])} effects go in the paper's direction in this run.")]
    if compared:
        matched = [earlier[k] for k in ((c["effect"], c["table"]) for c in results["comparisons"]) if k in earlier]
        blocks.append(("p", f"{compared['label']}: {compared['source']} (data: {compared['data']}; scale "
                            f"{compared['scale']}; mrsynth {compared['mrsynth']}); "
                            f"{sum(e['same_direction'] for e in matched)} of {len(matched)} effects in the paper's "
                            f"direction there. Median effect size relative to the paper's: "
                            f"{fmt(_median_ratio(results['comparisons']))} here, {fmt(_median_ratio(matched))} "
                            "there."))
    for c in results["comparisons"]:
        verb = "reduces" if c["ours_reduction"] > 0 else "increases"
        blocks.append(("p", f"{c['effect']} ({c['table']}): our loss changes by {pct(-c['ours_reduction'])} "
                            f"(the paper: {pct(-c['paper_reduction'])}); the change {verb} our loss, "
                            f"{'as' if c['same_direction'] else 'unlike'} in the paper."))
    blocks.append(("h2", "Against the baselines"))
    for table, beats in results["beats_baselines"].items():
        for model, outcome in beats.items():
            blocks.append(("p", f"{table}, {model}: test patch MSE {fmt(outcome['network'])} vs tissue-mean "
                                f"{fmt(outcome['tissue-mean'])} and intensity-map {fmt(outcome['intensity-map'])}: "
                                f"{'beats both' if outcome['beats_both'] else 'does not beat both'}."))
    for key, caption in (("figure3", "Figure 3: learning curves, within-subject 9-layer network with masks"),
                         ("figure4", "Figure 4: four test patches, 1 training subject"),
                         ("figure5", "Figure 5: the same patches, many training subjects")):
        if key in figures:
            blocks += [("h2", caption), ("img", figures[key])]
    if results.get("viewer"):
        blocks.append(("p", f"Interactive viewer of one test subject (three planes, linked crosshairs, error map): "
                            f"{results['viewer']}"))
    return blocks


# --------------------------------------------------------------------------- the command


def _prepare_data(out: Path, data: Path | None, scale: Scale, seed: int, progress: bool) -> tuple[Path, str]:
    from .simulate import simulate_dataset

    if data is None:
        data = out / "data"
        if not (data / ".complete").exists():
            simulate_dataset(data, scale.subjects, voxel_size=scale.voxel_size, seed=seed, progress=progress)
            (data / ".complete").write_text("")
        description = f"{scale.subjects} subjects simulated from the default anatomy at {scale.voxel_size} mm"
    else:
        description = str(data)
    cache = out / "cache"
    report = prepare_all(discover(data), cache, progress=progress)
    if report.failed:
        raise InputError("bad subjects: " + "; ".join(f"{r.id}: {r.message}" for r in report.failed), data)
    return cache, description


def reproduce(out: str | Path, data: str | Path | None = None, scale: str = "small", seed: int = 0,
              progress: bool = True, compare: str | Path | None = None, compare_label: str = "earlier run") -> dict:
    """Run (or reuse) the experiment grid and write report.md, report.html and results.json.

    ``compare``: an earlier reproduction's folder; its effects go beside this run's in the report.
    """
    if scale not in SCALES:
        raise InputError(f"unknown scale {scale!r}; choose from {', '.join(SCALES)}")
    compared = load_compared(compare, compare_label) if compare else None
    started = time.perf_counter()
    out, setting = Path(out), SCALES[scale]
    out.mkdir(parents=True, exist_ok=True)
    cache, description = _prepare_data(out, Path(data) if data else None, setting, seed, progress)
    prepared = {s.id: s for s in list_prepared(cache) if s.has_t2}
    subjects = assign_subjects(list(prepared), setting)
    configs = _run_configs(cache, setting, subjects, seed)
    folders, run_info = {}, {}
    for name, config in configs.items():
        began = time.perf_counter()
        folders[name], status = train_or_reuse(config, out / "runs" / f"{name}-{config_hash(config)}", progress)
        run_info[name] = {"folder": str(folders[name].relative_to(out)), "status": status,
                          "config_hash": config_hash(config), "config": asdict(config),
                          "seconds": time.perf_counter() - began,
                          "summary": runs.read_summary(folders[name])}
    tables, detail = {}, {"table1": {}, "table2": {}, "table3": {}}
    references = _reference_volumes([prepared[i] for i in subjects["test"]], setting.volume_subjects)
    for name, config in configs.items():
        table, layers, kind = _experiment(name)
        scores = _score_run(folders[name], config, references, setting, seed)
        run_info[name]["scores"] = scores
        tables.setdefault(table, {})[(layers, kind, "network")] = scores["network"]["patch"]["mse"]
        detail[table][f"{layers} layers, {kind}"] = {"paper_key": [layers, kind], **scores["network"]}
        for baseline in BASELINE_KINDS:
            if baseline in scores:
                detail[table][f"baseline: {baseline}"] = scores[baseline]
    beats = {table: {key: _beats(entry["patch"]["mse"], {b: rows[f"baseline: {b}"] for b in BASELINE_KINDS})
                     for key, entry in rows.items() if not key.startswith("baseline")}
             for table, rows in detail.items()}
    figures_dir = out / "figures"
    figures_dir.mkdir(exist_ok=True)
    figures = _figures(folders, configs, figures_dir)
    view = _viewer_page(folders, run_info, references, figures_dir / "view.html")
    results = {
        "scale": asdict(setting), "data": description, "seed": seed, "subjects": subjects,
        "units": "normalized training units (" + setting.norm + " normalization)",
        "paper": {table: {f"{layers} layers, {kind}": value for (layers, kind), value in values.items()}
                  for table, values in PAPER.items()},
        "runs": run_info, "tables_detail": detail, "comparisons": _comparisons(tables),
        "beats_baselines": beats, "viewer": view and str(view.relative_to(out)), "compared_with": compared, "versions": package_versions(), "mrsynth": __version__,
        "seconds": time.perf_counter() - started,
    }
    blocks = build_report(results, figures)
    write_text(out / "report.md", render_markdown(blocks, out))
    write_text(out / "report.html", render_html(blocks, "mrsynth reproduction"))
    write_text(out / "results.json", json.dumps(results, indent=2, default=_json_default) + "\n")
    return results


def _beats(network: float, scores: dict) -> dict:
    base = {b: scores[b]["patch"]["mse"] for b in BASELINE_KINDS}
    return {"network": network, **base, "beats_both": bool(network < min(base.values()))}


def _json_default(value):
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialize {type(value)}")


def _viewer_page(folders: dict[str, Path], run_info: dict, references: dict, path: Path) -> Path | None:
    """An interactive page of the first test subject predicted by the last across-subject network with masks."""
    across = [name for name, info in run_info.items() if "volume" in info["scores"]["network"]
              and info["config"]["data"]["channels"] > 1]
    if not across or not references:
        return None
    name = across[-1]
    subject, _ = next(iter(references.values()))
    model, info = load_model(folders[name] / runs.MODEL)
    return write_page(path, prepared_page(predict_prepared(model, info, subject), subject),
                      f"mrsynth reproduce: {subject.id} predicted by {name}")


def _figures(folders: dict[str, Path], configs: dict[str, TrainConfig], folder: Path) -> dict[str, Path]:
    from .figures import learning_curve_figure

    figures = {}
    within = folders["table1-L9-masks"]
    figures["figure3"] = learning_curve_figure(runs.read_history(within), runs.read_steps(within),
                                               folder / "figure3_learning_curves.png")
    items = _figure_patches(configs["table2-L9-masks"], folders["table2-L9-masks"])
    order2 = ["table2-L9-none", "table2-L9-masks", "table2-L3-none", "table2-L3-masks"]
    figures["figure4"] = _patch_figure(folders, configs, order2, items, folder / "figure4_one_subject.png",
                                       "Training set = 1 subject")
    order3 = ["table3-L9-none", "table3-L9-masks"]
    figures["figure5"] = _patch_figure(folders, configs, order3, items, folder / "figure5_many_subjects.png",
                                       "Training set = many subjects")
    return figures
