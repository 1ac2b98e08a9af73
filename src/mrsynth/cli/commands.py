"""What each ``mrsynth`` subcommand does: a few lines each over the Python API (imported where used, so that a
command loads only what it needs)."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

from .. import labels
from ..errors import InputError
from ..logs import log
from .bids import run_bids


def _prepare(args) -> int:
    from ..data import prepare_all
    from ..io import discover

    subjects = discover(args.root, args.layout)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = prepare_all(
            subjects, args.out, axis=args.axis, jobs=args.jobs, strict=args.strict, force=args.force, masks=args.masks
        )
    for warning in caught:
        log.warning("warning: %s", warning.message)
    for status in ("prepared", "up-to-date"):
        print(f"{status}: {len(report.by_status(status))}")
    if report.failed:
        log.error("failed: %d", len(report.failed))
        for result in report.failed:
            log.error("  %s: %s", result.id, result.message)
    return 2 if report.failed and len(report.failed) == len(report.results) else 0


def _masks(args) -> int:
    from ..masks import write_masks

    with warnings.catch_warnings(record=True):  # the T2w-looking warning is logged by the masks module
        warnings.simplefilter("always")
        paths = write_masks(Path(args.t1), Path(args.out), figure=not args.no_figure, method=args.method)
    for key, path in paths.items():
        print(f"{key}: {path}")
    return 0


def _view(args) -> int:
    from ..evaluation import load_page, write_page

    optional = lambda value: value and Path(value)
    page = load_page(Path(args.pred), optional(args.t1), optional(args.ref), optional(args.mask), optional(args.seg))
    out = write_page(Path(args.out), page, args.title or f"mrsynth: {Path(args.pred).name}", args.max_voxels)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB; open it in a browser, no network needed)")
    return 0


def _inspect(args) -> int:
    from ..data import PatchGrid, list_prepared

    grid = PatchGrid(args.patch_size, args.stride)
    rows = []
    for subject in list_prepared(args.cache):
        meta = subject.meta
        rows.append(
            {
                "id": subject.id,
                "shape": meta["shape"],
                "voxel_size": meta["voxel_size"],
                "orientation": meta["orientation"],
                "slice_axis": meta["axis"],
                "slices": meta["stored_shape"][0],
                "has_t2": subject.has_t2,
                "voxels_per_class": meta["class_voxels"],
                "unknown_codes": meta["unknown_codes"],
                "patches": grid.count(subject.stored_shape),
            }
        )
    if args.json:
        print(json.dumps({"patch_size": grid.size, "stride": grid.stride, "subjects": rows}, indent=2))
        return 0
    print(f"{len(rows)} prepared subject(s); patches {grid.size} px, stride {grid.stride}")
    header = f"{'subject':<16} {'shape':<16} {'voxel (mm)':<16} {'T2w':<4} {'brain':>9} {'patches':>8}"
    print(header)
    for row in rows:
        shape = "x".join(map(str, row["shape"]))
        voxel = "x".join(f"{v:g}" for v in row["voxel_size"])
        print(
            f"{row['id']:<16} {shape:<16} {voxel:<16} {'yes' if row['has_t2'] else 'no':<4} "
            f"{row['voxels_per_class']['brain']:>9} {row['patches']:>8}"
        )
    print(f"total patches: {sum(r['patches'] for r in rows)}")
    return 0


def _labels(args) -> int:
    if args.markdown:
        print(labels.markdown_table(), end="")
        return 0
    print(f"label table version {labels.TABLE_VERSION}; classes: {', '.join(labels.CLASSES)}")
    for codes, cls, name in labels.table_rows():
        print(f"{codes:>12}  {cls:<13} {name}")
    return 0


def _fixtures(args) -> int:
    from ..io.fixtures import write_dataset

    target = write_dataset(args.out, args.subjects, args.layout, seed=args.seed)
    print(f"wrote {args.subjects} fixture subject(s): {target}")
    return 0


def _simulate(args) -> int:
    from ..simulate import simulate_dataset, write_figure

    folders = simulate_dataset(args.out, args.subjects, labels=args.labels, voxel_size=args.voxel_size, seed=args.seed)
    print(f"simulated {len(folders)} subject(s) in the HCP layout under {args.out}")
    if args.figure:
        print(f"figure: {write_figure(folders[:4], Path(args.out) / 'simulated_subjects.png')}")
    return 0


def _train_overrides(args) -> list[str]:
    from .parser import TRAIN_SHORTCUTS

    given = {name: getattr(args, flag[2:].replace("-", "_")) for flag, name in TRAIN_SHORTCUTS.items()}
    return [f"{name}={value}" for name, value in given.items() if value is not None] + list(args.set or [])


def _train(args) -> int:
    from ..training import check, load_config, reference_markdown, resume_config, train

    if args.list_settings:
        print(reference_markdown(), end="")
        return 0
    overrides = _train_overrides(args)
    if args.resume:
        config, run_dir = resume_config(args.resume, overrides), Path(args.resume)
    else:
        if not args.out and not args.check:
            raise InputError("give the run folder with --out (or --resume RUN)")
        config, run_dir = load_config(args.config, overrides, args.preset or []), Path(args.out or ".")
        if not config.data.cache:
            raise InputError("no prepared cache: give --cache CACHE or data.cache in the config")
    if args.check:
        print(json.dumps(check(config), indent=2))
        return 0
    try:
        summary = train(config, run_dir, resume=bool(args.resume))
    except FloatingPointError as error:
        log.error("mrsynth: error: %s", error)
        return 1
    if "rank" in summary:  # a torchrun worker other than rank 0: rank 0 reports
        return 0
    print(json.dumps(summary, indent=2))
    log.info("run folder: %s (model: %s)", run_dir, run_dir / "model")
    return 0


def _predict(args) -> int:
    from ..data import PreparedSubject
    from ..inference import predict_files, predict_many, predict_prepared_file
    from ..networks import load_model, model_folder
    from ..runtime import pick_device

    if args.batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {args.batch_size}")
    model, info = load_model(args.model)
    options = {"batch_size": args.batch_size, "device": pick_device(args.device), "progress": True}
    if args.data:
        if not args.out_dir:
            raise InputError("--data needs --out-dir")
        output = "bids" if args.bids else "flat" if args.flat else "auto"
        written = predict_many(
            model,
            info,
            Path(args.data),
            Path(args.out_dir),
            masks=args.masks,
            output=output,
            model_folder=model_folder(args.model),
            **options,
        )
        print(f"wrote {len(written)} prediction(s) to {args.out_dir}")
        return 0
    if not args.out:
        raise InputError("give the output file with --out")
    if args.bids or args.flat:
        raise InputError("--bids and --flat choose the layout of --out-dir (with --data)")
    if args.subject:
        predict_prepared_file(model, info, PreparedSubject.open(args.subject), args.out, **options)
    elif args.t1:
        predict_files(
            model,
            info,
            Path(args.t1),
            args.out,
            args.seg and Path(args.seg),
            args.mask and Path(args.mask),
            masks=args.masks,
            **options,
        )
    else:
        raise InputError("give --t1 (with --seg/--mask), --subject or --data")
    print(f"wrote {args.out}")
    return 0


def _finite_or_null(value):
    """JSON has no NaN or Inf: a score that is not a number is written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(v) for v in value]
    return value


def _evaluate(args) -> int:
    from ..atomic import write_text
    from ..evaluation import Reference, evaluate_file, evaluate_folder, references
    from ..io import Subject, load_subject
    from ..report import format_table

    pred = Path(args.pred)
    if pred.is_dir():
        result = evaluate_folder(pred, references(args.ref), args.scale, strict=args.strict)
        table = format_table({**result["per_subject"], "mean ± SD": result["summary"]})
    else:
        if not args.mask:
            raise InputError("scoring one file needs the brain mask (--mask)")
        volumes = load_subject(
            Subject("reference", t1=Path(args.ref), seg=args.seg and Path(args.seg), mask=Path(args.mask)),
            need_labels=False,
            t1_role="reference T2w",
        )
        reference = Reference("reference", volumes.t1, volumes.mask, volumes.affine, volumes.seg, source=str(args.ref))
        result = evaluate_file(pred, reference, args.scale)
        table = format_table({pred.name: result})
        if args.seg:
            tissue = [f"mse_{name}" for name in labels.CLASSES]
            table += "\n\n" + format_table({pred.name: result}, keys=tissue)
    print(
        f"scale: {args.scale}; MSE, MAE, PSNR and SSIM inside the brain mask except mse_fov (whole field of view); "
        "psnr_p99: each volume by its own brain 99th percentile, data range 1"
    )
    print(table)
    if args.json:
        write_text(args.json, json.dumps(_finite_or_null(result), indent=2, allow_nan=False) + "\n")
    return 0


def _baselines(args) -> int:
    from ..training import fit_for_run

    for kind, folder in fit_for_run(args.run, cache=args.cache).items():
        print(f"{kind}: {folder}")
    return 0


def _reproduce(args) -> int:
    from ..experiments.effects import HOLDS
    from ..experiments.reproduce import reproduce

    results = reproduce(
        args.out,
        args.data,
        args.scale,
        args.seed,
        compare=args.compare,
        compare_label=args.compare_label,
        seeds=args.seeds,
    )
    runs = [run for grid in results["per_seed"].values() for run in grid["runs"].values()]
    holds = sum(c["verdict"] == HOLDS for c in results["comparisons"])
    print(
        f"{len(runs)} runs over {len(results['seeds'])} seeds ({sum(r['status'] == 'reused' for r in runs)} reused); "
        f"{holds}/{len(results['comparisons'])} of the paper's effects in its direction with a 95% CI excluding 0; "
        f"report: {Path(args.out) / 'report.md'} and report.html; numbers: results.json "
        f"({results['seconds']:.0f} s)"
    )
    return 0


def _crossval(args) -> int:
    from ..experiments.crossval import HEADLINE, NETWORK, crossval

    results = crossval(
        args.data, args.out, args.folds, args.config, args.preset or [], args.set or [], args.seed, masks=args.masks
    )
    summary = results["summary"]
    for method, scores in summary.items():
        print(
            f"{method}: {HEADLINE} {scores[HEADLINE]['mean']:.2f} ± {scores[HEADLINE]['sd']:.2f} dB "
            f"over {scores[HEADLINE]['n']} held-out subject(s)"
        )
    for baseline, by_metric in results["paired"].items():
        for metric, paired in by_metric.items():
            print(
                f"{NETWORK} - {baseline}, {metric}: {paired['mean']:+.2f} dB (95 % CI {paired['ci95'][0]:+.2f} to "
                f"{paired['ci95'][1]:+.2f}), better in {paired['network_better_in']} of {paired['subjects']}"
            )
    log.info(
        "report: %s and report.html; numbers: results.json (%.0f s)", Path(args.out) / "report.md", results["seconds"]
    )
    return 0


#: The shipped models' steps where they differ from their recipe's defaults: what a bare command runs.
SHIPPED_STEPS = {"synthesis": {"steps": 8000, "lesion_steps": 2000}, "segmenter": {}}


def _pretrain(args) -> int:
    import sys

    from ..training.pretrain import pretrain
    from ..training.recipe_settings import check_settings, parse_settings
    from ..training.segmenter_recipe import SegmenterConfig, SegmenterRecipe
    from ..training.synthesis_recipe import SynthesisConfig, SynthesisRecipe

    given = {"steps": args.steps, "lesion_steps": args.lesion_steps, "per_map": args.per_map, "workers": args.workers}
    given = {k: v for k, v in given.items() if v is not None}
    own = {"synthesis": {"lesion_steps"}, "segmenter": {"per_map"}}
    foreign = [f"--{k.replace('_', '-')}" for k in given if k in set().union(*own.values()) - own[args.recipe]]
    if foreign:
        raise InputError(f"{', '.join(foreign)} do not apply to --recipe {args.recipe}")
    recipe_type, config_type = {
        "synthesis": (SynthesisRecipe, SynthesisConfig),
        "segmenter": (SegmenterRecipe, SegmenterConfig),
    }[args.recipe]
    shipped = SHIPPED_STEPS[args.recipe] if args.steps is None else {}  # --steps N alone: N steps, no lesion phase
    settings = {**shipped, **parse_settings(config_type, args.set), **given}
    config = config_type(**{**settings, "maps": str(args.maps), "seed": args.seed, "device": args.device})
    check_settings(config)
    recipe = recipe_type(config)
    folder = pretrain(recipe, Path(args.out), resume=args.resume, command="mrsynth " + " ".join(sys.argv[1:]))
    print(f"wrote {folder}")
    return 0


def _card(args) -> int:
    from ..training.model_card import write_card

    print(f"wrote {write_card(args.model, args.figures)}")
    return 0


def _demo(args) -> int:
    from ..experiments.demo import run_demo

    run_demo(Path(args.out))
    return 0


#: Each subcommand's handler.
HANDLERS = {
    "prepare": _prepare,
    "masks": _masks,
    "view": _view,
    "inspect": _inspect,
    "labels": _labels,
    "fixtures": _fixtures,
    "simulate": _simulate,
    "train": _train,
    "predict": _predict,
    "evaluate": _evaluate,
    "baselines": _baselines,
    "reproduce": _reproduce,
    "crossval": _crossval,
    "demo": _demo,
    "pretrain": _pretrain,
    "card": _card,
    "bids": run_bids,
}
