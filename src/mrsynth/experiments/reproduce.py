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
``small`` (default; a 2-core CPU, 3 training seeds: wall clock in benchmarks/RESULTS.md, reproduce_simulator)
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

from .. import __version__
from ..atomic import write_text
from ..data import list_prepared, prepare_all
from ..errors import InputError
from ..evaluation import Reference, score
from ..inference import Model
from ..io import discover
from ..networks import package_versions
from ..report import render_html, render_markdown
from ..simulate import simulate_dataset
from ..training import (
    BASELINES,
    Lookup,
    Network,
    TrainConfig,
    load_config,
    load_run_data,
    patch_errors,
    pooled_losses,
    runs,
    to_toml,
)
from .effects import INPUTS, PAPER, baseline_outcomes, effects, experiment, load_compared, mean_and_sd, unit_errors
from .paper import build_report, paper_figures, viewer_page


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
    seeds: int = 1  # training seeds run by default (--seeds)


EXPERIMENT_SCALES = {
    "paper": Scale(
        "paper",
        subjects=56,
        voxel_size=0.7,
        patch_size=128,
        stride=24,
        epochs_one=20,
        epochs_many=8,
        batch_one=32,
        batch_many=128,
        patches_per_epoch=0,
        eval_patches=0,
        volume_subjects=5,
        many_subjects=50,
        norm="paper",
        recalibration_batches=100,
    ),
    "small": Scale(
        "small",
        subjects=16,
        voxel_size=1.4,
        patch_size=64,
        stride=12,
        epochs_one=8,
        epochs_many=8,
        batch_one=32,
        batch_many=32,
        patches_per_epoch=1024,
        eval_patches=512,
        volume_subjects=5,
        many_subjects=11,
        norm="robust",
        recalibration_batches=32,
        seeds=3,
    ),
    # for the test suite only: fixture-sized subjects, a few steps per run
    "tiny": Scale(
        "tiny",
        subjects=8,
        voxel_size=3.0,
        patch_size=16,
        stride=8,
        epochs_one=2,
        epochs_many=2,
        batch_one=16,
        batch_many=16,
        patches_per_epoch=64,
        eval_patches=64,
        volume_subjects=2,
        many_subjects=3,
        norm="robust",
        recalibration_batches=4,
    ),
}


def assign_subjects(ids: list[str], scale: Scale) -> dict:
    if len(ids) < 7:
        raise InputError(
            f"the experiment grid needs at least 7 subjects with a T2w (1 training, 5 test, "
            f"1 more for Table 3); found {len(ids)}"
        )
    ids = sorted(ids)
    one, test = ids[0], ids[1:6]
    many = [one] + ids[6 : 6 + scale.many_subjects - 1]
    return {"one": one, "test": test, "many": many}


def _run_configs(cache: Path, scale: Scale, subjects: dict, seed: int) -> dict[str, TrainConfig]:
    common = [
        f"data.cache={cache}",
        f"data.patch_size={scale.patch_size}",
        f"data.stride={scale.stride}",
        f"data.norm={scale.norm}",
        f"data.max_patches_per_epoch={scale.patches_per_epoch}",
        f"data.max_eval_patches={scale.eval_patches}",
        f"seed={seed}",
        "optim.lr=0.001",
        f"bn_recalibration_batches={scale.recalibration_batches}",
        "val_recalibration_batches=4",
    ]
    one = [f"optim.epochs={scale.epochs_one}", f"optim.batch_size={scale.batch_one}"]
    many = [f"optim.epochs={scale.epochs_many}", f"optim.batch_size={scale.batch_many}"]
    test = f"data.test={','.join(subjects['test'])}"
    configs = {}
    for layers in (3, 9):
        for channels in INPUTS.values():
            model = [f"model.layers={layers}", f"data.channels={channels}"]
            tag = f"L{layers}-{'masks' if channels > 1 else 'none'}"
            configs[f"table1-{tag}"] = load_config(
                None, common + one + model + ["data.split=within", f"data.subject={subjects['one']}"]
            )
            configs[f"table2-{tag}"] = load_config(None, common + one + model + [f"data.train={subjects['one']}", test])
            if layers == 9:
                configs[f"table3-{tag}"] = load_config(
                    None, common + many + model + [f"data.train={','.join(subjects['many'])}", test]
                )
    return configs


def config_hash(config: TrainConfig) -> str:
    return hashlib.sha256(to_toml(config).encode()).hexdigest()[:10]


def _reference_volumes(subjects: list, count: int) -> dict:
    """The first ``count`` test subjects with their references (native order), read once."""
    return {subject.id: (subject, Reference.from_prepared(subject)) for subject in subjects[:count]}


def _score_run(network: Model, folder: Path, config: TrainConfig, references: dict, scale: Scale, seed: int):
    """Test patch losses of the network and the baselines, whole-volume scores for across-subject runs, and the
    network's errors by test unit (subjects across subjects, patches within one).

    Every model of a table is scored on the same seeded test patches; the baselines are fitted
    on the run's training data.
    """
    data = load_run_data(folder, config)
    models = {"network": network}
    if config.data.channels > 1 and config.model.layers == 9:
        models.update({kind: Lookup(kind).fit(folder) for kind in BASELINES})
    across = data.split.kind == "across"
    scores, units = {}, None
    for key, model in models.items():
        errors = patch_errors(model.network, data.test, 32, "cpu", scale.eval_patches, seed)
        if key == "network":
            units = unit_errors(errors, [part.subject.id for part in data.test.parts] if across else None)
        entry = {"patch": pooled_losses(errors)}
        if across:
            volumes = {
                subject_id: score(model.predict(subject), reference)
                for subject_id, (subject, reference) in references.items()
            }
            entry["volume"] = {
                k: float(np.mean([v[k] for v in volumes.values()])) for k in ("mse", "psnr", "psnr_p99", "ssim_3d")
            }
            entry["volume_subjects"] = list(volumes)
        scores[key] = entry
    return scores, units


# --------------------------------------------------------------------------- the command


def _prepare_data(out: Path, data: Path | None, scale: Scale, seed: int, progress: bool) -> tuple[Path, str]:
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


def reproduce(
    out: str | Path,
    data: str | Path | None = None,
    scale: str = "small",
    seed: int = 0,
    progress: bool = True,
    compare: str | Path | None = None,
    compare_label: str = "earlier run",
    seeds: int | None = None,
) -> dict:
    """Run (or reuse) the experiment grid under ``seeds`` training seeds; write report.md, report.html, results.json.

    Training seeds are ``seed``, ``seed + 1``, ...; the data (simulated with ``seed`` when
    ``data`` is None) and the subjects' roles are the same for every seed. ``seeds`` defaults to
    the scale's (3 at small). Figures 3-5 and the viewer come from the first seed.
    ``compare``: an earlier reproduction's folder; its effects go beside this run's in the report.
    """
    if scale not in EXPERIMENT_SCALES:
        raise InputError(f"unknown scale {scale!r}; choose from {', '.join(EXPERIMENT_SCALES)}")
    setting = EXPERIMENT_SCALES[scale]
    seeds = setting.seeds if seeds is None else seeds
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise InputError(f"seeds must be a whole number >= 1, got {seeds!r}")
    compared = load_compared(compare, compare_label) if compare else None
    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cache, description = _prepare_data(out, Path(data) if data else None, setting, seed, progress)
    prepared = {s.id: s for s in list_prepared(cache) if s.has_t2}
    subjects = assign_subjects(list(prepared), setting)
    references = _reference_volumes([prepared[i] for i in subjects["test"]], setting.volume_subjects)
    figures_dir = out / "figures"
    figures_dir.mkdir(exist_ok=True)
    per_seed, figures, view = {}, {}, None
    for training_seed in range(seed, seed + seeds):
        configs = _run_configs(cache, setting, subjects, training_seed)
        folders, models, run_info = _train_grid(configs, out, progress)
        per_seed[str(training_seed)] = _score_grid(
            configs, folders, models, run_info, references, setting, training_seed
        )
        if training_seed == seed:
            figures = paper_figures(folders, models, configs, figures_dir)
            view = viewer_page(models, run_info, references, figures_dir / "view.html")
    detail, comparisons = _aggregate(per_seed)
    results = {
        "scale": asdict(setting),
        "data": description,
        "seed": seed,
        "seeds": [int(s) for s in per_seed],
        "subjects": subjects,
        "units": "normalized training units (" + setting.norm + " normalization)",
        "paper": {
            table: {f"{layers} layers, {kind}": value for (layers, kind), value in values.items()}
            for table, values in PAPER.items()
        },
        "tables_detail": detail,
        "comparisons": comparisons,
        "beats_baselines": baseline_outcomes(detail, per_seed),
        "per_seed": per_seed,
        "viewer": view and str(view.relative_to(out)),
        "compared_with": compared,
        "versions": package_versions(),
        "mrsynth": __version__,
        "seconds": time.perf_counter() - started,
    }
    blocks = build_report(results, figures)
    write_text(out / "report.md", render_markdown(blocks, out))
    write_text(out / "report.html", render_html(blocks, "mrsynth reproduction"))
    write_text(out / "results.json", json.dumps(results, indent=2, default=_json_default) + "\n")
    return results


def _train_grid(configs: dict[str, TrainConfig], out: Path, progress: bool) -> tuple[dict, dict, dict]:
    """Every run of the grid trained (or reused, or resumed) in a folder named after its configuration."""
    folders, models, run_info = {}, {}, {}
    for name, config in configs.items():
        began = time.perf_counter()
        folders[name] = out / "runs" / f"{name}-{config_hash(config)}"
        status = runs.state(folders[name])
        models[name] = Network(config).fit(folders[name], progress)
        run_info[name] = {
            "folder": str(folders[name].relative_to(out)),
            "status": status,
            "config_hash": config_hash(config),
            "config": asdict(config),
            "seconds": time.perf_counter() - began,
            "summary": runs.read_summary(folders[name]),
        }
    return folders, models, run_info


def _score_grid(configs, folders, models, run_info, references, setting: Scale, seed: int) -> dict:
    """One seed's grid scored: each run's scores (into ``run_info``), every row of the tables, and the networks'
    errors by test unit."""
    detail, units = {"table1": {}, "table2": {}, "table3": {}}, {}
    for name, config in configs.items():
        table, layers, kind = experiment(name)
        scores, units[name] = _score_run(models[name], folders[name], config, references, setting, seed)
        run_info[name]["scores"] = scores
        detail[table][f"{layers} layers, {kind}"] = {"paper_key": [layers, kind], **scores["network"]}
        for baseline in BASELINES:
            if baseline in scores:
                detail[table][f"baseline: {baseline}"] = scores[baseline]
    return {"runs": run_info, "tables_detail": detail, "unit_errors": units}


def _aggregate(per_seed: dict) -> tuple[dict, list[dict]]:
    """Every table row as mean and SD over seeds, and the paper's effects with their bootstrap intervals."""
    grids = list(per_seed.values())
    detail = {
        table: {row: mean_and_sd([grid["tables_detail"][table][row] for grid in grids]) for row in rows}
        for table, rows in grids[0]["tables_detail"].items()
    }
    losses, units = {}, {}
    for name in grids[0]["unit_errors"]:
        table, layers, kind = experiment(name)
        losses[(table, layers, kind)] = detail[table][f"{layers} layers, {kind}"]["patch"]["mse"]
        units[(table, layers, kind)] = [grid["unit_errors"][name] for grid in grids]
    return detail, effects(losses, units)


def _json_default(value):
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialize {type(value)}")
