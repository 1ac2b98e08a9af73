"""The ``mrsynth`` command line: a thin layer over the Python API.

Results (tables, JSON, written paths) go to standard output; messages go through
:mod:`mrsynth.logs` to standard error, the same on every command: ``--quiet``,
``--verbose`` and ``--progress`` (bars even when standard error is not a terminal).

Exit codes: 0 success, 2 bad input (the message names the file and the problem).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from pathlib import Path

from . import __version__, labels, logs
from .errors import InputError
from .logs import log


def _prepare(args) -> int:
    from .cache import prepare_all
    from .subjects import discover

    subjects = discover(args.root, args.layout)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = prepare_all(subjects, args.out, axis=args.axis, jobs=args.jobs,
                             strict=args.strict, force=args.force, masks=args.masks)
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
    from .masks import write_masks

    with warnings.catch_warnings(record=True):  # the T2w-looking warning is logged by the masks module
        warnings.simplefilter("always")
        paths = write_masks(Path(args.t1), Path(args.out), figure=not args.no_figure, method=args.method)
    for key, path in paths.items():
        print(f"{key}: {path}")
    return 0


def _view(args) -> int:
    from .viewer import load_page, write_page

    optional = lambda value: value and Path(value)
    page = load_page(Path(args.pred), optional(args.t1), optional(args.ref), optional(args.mask), optional(args.seg))
    out = write_page(Path(args.out), page, args.title or f"mrsynth: {Path(args.pred).name}", args.max_voxels)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB; open it in a browser, no network needed)")
    return 0


def _inspect(args) -> int:
    from .cache import list_prepared
    from .patches import PatchGrid

    grid = PatchGrid(args.patch_size, args.stride)
    rows = []
    for subject in list_prepared(args.cache):
        meta = subject.meta
        rows.append({
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
        })
    if args.json:
        print(json.dumps({"patch_size": grid.size, "stride": grid.stride, "subjects": rows}, indent=2))
        return 0
    print(f"{len(rows)} prepared subject(s); patches {grid.size} px, stride {grid.stride}")
    header = f"{'subject':<16} {'shape':<16} {'voxel (mm)':<16} {'T2w':<4} {'brain':>9} {'patches':>8}"
    print(header)
    for row in rows:
        shape = "x".join(map(str, row["shape"]))
        voxel = "x".join(f"{v:g}" for v in row["voxel_size"])
        print(f"{row['id']:<16} {shape:<16} {voxel:<16} {'yes' if row['has_t2'] else 'no':<4} "
              f"{row['voxels_per_class']['brain']:>9} {row['patches']:>8}")
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
    from .fixtures import write_dataset

    target = write_dataset(args.out, args.subjects, args.layout, seed=args.seed)
    print(f"wrote {args.subjects} fixture subject(s): {target}")
    return 0


def _simulate(args) -> int:
    from .simulate import simulate_dataset, write_figure

    folders = simulate_dataset(args.out, args.subjects, labels=args.labels,
                               voxel_size=args.voxel_size, seed=args.seed)
    print(f"simulated {len(folders)} subject(s) in the HCP layout under {args.out}")
    if args.figure:
        print(f"figure: {write_figure(folders[:4], Path(args.out) / 'simulated_subjects.png')}")
    return 0


def _train_overrides(args) -> list[str]:
    pairs = {
        "data.cache": args.cache, "data.split": args.split, "data.subject": args.subject,
        "data.train": args.train, "data.val": args.val, "data.test": args.test,
        "data.channels": args.channels, "data.norm": args.norm, "data.patch_size": args.patch_size,
        "data.stride": args.stride, "model.layers": args.layers, "optim.epochs": args.epochs,
        "optim.batch_size": args.batch_size, "optim.lr": args.lr, "device": args.device, "seed": args.seed,
    }
    return [f"{k}={v}" for k, v in pairs.items() if v is not None] + list(args.set or [])


def _train(args) -> int:
    from .config import load_config
    from .runs import resume_config
    from .train import train

    overrides = _train_overrides(args)
    if args.resume:
        config, run_dir = resume_config(args.resume, overrides), Path(args.resume)
    else:
        if not args.out:
            raise InputError("give the run folder with --out (or --resume RUN)")
        config, run_dir = load_config(args.config, overrides, args.preset or []), Path(args.out)
        if not config.data.cache:
            raise InputError("no prepared cache: give --cache CACHE or data.cache in the config")
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
    from .cache import PreparedSubject
    from .modelfile import load_model
    from .predict import predict_files, predict_many, predict_prepared_file
    from .runtime import pick_device

    model, info = load_model(args.model)
    options = {"batch_size": args.batch_size, "device": pick_device(args.device), "progress": True}
    if args.data:
        if not args.out_dir:
            raise InputError("--data needs --out-dir")
        output = "bids" if args.bids else "flat" if args.flat else "auto"
        written = predict_many(model, info, Path(args.data), Path(args.out_dir), masks=args.masks, output=output,
                               model_folder=Path(args.model), **options)
        print(f"wrote {len(written)} prediction(s) to {args.out_dir}")
        return 0
    if not args.out:
        raise InputError("give the output file with --out")
    if args.bids or args.flat:
        raise InputError("--bids and --flat choose the layout of --out-dir (with --data)")
    if args.subject:
        predict_prepared_file(model, info, PreparedSubject.open(args.subject), Path(args.out), **options)
    elif args.t1:
        predict_files(model, info, Path(args.t1), Path(args.out), args.seg and Path(args.seg),
                      args.mask and Path(args.mask), masks=args.masks, **options)
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
    from .atomic import write_text
    from .evaluate import Reference, evaluate_file, evaluate_folder, references
    from .report import format_table
    from .subjects import Subject, load_subject

    pred = Path(args.pred)
    if pred.is_dir():
        result = evaluate_folder(pred, references(args.ref), args.scale)
        table = format_table({**result["per_subject"], "mean ± SD": result["summary"]})
    else:
        if not args.mask:
            raise InputError("scoring one file needs the brain mask (--mask)")
        volumes = load_subject(Subject("reference", t1=Path(args.ref), seg=args.seg and Path(args.seg),
                                       mask=Path(args.mask)), need_labels=False)
        reference = Reference("reference", volumes.t1, volumes.mask, volumes.affine, volumes.seg, source=str(args.ref))
        result = evaluate_file(pred, reference, args.scale)
        table = format_table({pred.name: result})
        if args.seg:
            tissue = [f"mse_{name}" for name in labels.CLASSES]
            table += "\n\n" + format_table({pred.name: result}, keys=tissue)
    print(f"scale: {args.scale}; MSE, MAE, PSNR and SSIM inside the brain mask except mse_fov (whole field of view); "
          "psnr_p99: each volume by its own brain 99th percentile, data range 1")
    print(table)
    if args.json:
        write_text(args.json, json.dumps(_finite_or_null(result), indent=2, allow_nan=False) + "\n")
    return 0


def _baselines(args) -> int:
    from .baselines import fit_for_run

    for kind, folder in fit_for_run(args.run).items():
        print(f"{kind}: {folder}")
    return 0


def _reproduce(args) -> int:
    from .reproduce import reproduce

    results = reproduce(args.out, args.data, args.scale, args.seed, compare=args.compare,
                        compare_label=args.compare_label)
    agree = sum(c["same_direction"] for c in results["comparisons"])
    print(f"{len(results['runs'])} runs ({sum(r['status'] == 'reused' for r in results['runs'].values())} reused); "
          f"{agree}/{len(results['comparisons'])} of the paper's effects in the same direction; "
          f"report: {Path(args.out) / 'report.md'} and report.html; numbers: results.json "
          f"({results['seconds']:.0f} s)")
    return 0


def _crossval(args) -> int:
    from .crossval import HEADLINE, NETWORK, crossval

    results = crossval(args.data, args.out, args.folds, args.config, args.preset or [], args.set or [], args.seed,
                       masks=args.masks)
    summary = results["summary"]
    for method, scores in summary.items():
        print(f"{method}: {HEADLINE} {scores[HEADLINE]['mean']:.2f} ± {scores[HEADLINE]['sd']:.2f} dB "
              f"over {scores[HEADLINE]['n']} held-out subject(s)")
    for baseline, by_metric in results["paired"].items():
        for metric, paired in by_metric.items():
            print(f"{NETWORK} - {baseline}, {metric}: {paired['mean']:+.2f} dB (95 % CI {paired['ci95'][0]:+.2f} to "
                  f"{paired['ci95'][1]:+.2f}), better in {paired['network_better_in']} of {paired['subjects']}")
    log.info("report: %s and report.html; numbers: results.json (%.0f s)", Path(args.out) / "report.md",
             results["seconds"])
    return 0


def _demo(args) -> int:
    from .demo import run_demo

    run_demo(Path(args.out))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .config import PRESETS
    from .fixtures import LAYOUTS as FIXTURE_LAYOUTS
    from .masks import DEFAULT_METHOD as MASKS_DEFAULT
    from .masks import METHODS as MASK_METHODS
    from .masks import SOURCES as MASK_SOURCES
    from .metrics import SCALES as SCORE_SCALES
    from .normalization import METHODS
    from .patches import CHANNELS
    from .reproduce import SCALES as REPRODUCE_SCALES
    from .runs import SPLIT_KINDS
    from .subjects import LAYOUTS

    common = argparse.ArgumentParser(add_help=False)
    messages = common.add_argument_group("messages")
    loudness = messages.add_mutually_exclusive_group()
    loudness.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only, no progress bars")
    loudness.add_argument("-v", "--verbose", action="store_true", help="also debug messages")
    messages.add_argument("--progress", action="store_true",
                          help="progress bars even when standard error is not a terminal")
    messages.add_argument("--debug", action="store_true", help="show the full traceback of an internal error")

    parser = argparse.ArgumentParser(prog="mrsynth", description="Predict T2w MRI from T1w MRI.")
    parser.add_argument("--version", action="version", version=f"mrsynth {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, handler, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help, parents=[common])
        sub.set_defaults(handler=handler)
        return sub

    p = command("prepare", _prepare, "validate subjects and write the prepared cache")
    p.add_argument("root", help="HCP folder, BIDS dataset or CSV manifest")
    p.add_argument("--out", required=True, help="cache folder")
    p.add_argument("--layout", default="auto", choices=LAYOUTS)
    p.add_argument("--axis", default="axial",
                   help="slicing axis: axial (default, as in the paper), coronal, sagittal or 0/1/2")
    p.add_argument("--jobs", type=int, default=1, help="subjects prepared in parallel")
    p.add_argument("--strict", action="store_true", help="stop at the first bad subject")
    p.add_argument("--force", action="store_true", help="rebuild subjects even if up to date")
    automatic = (f"auto: computed from the T1w by the default method ({MASKS_DEFAULT}); ants-atlas: by atlas "
                 "registration (needs the `masks` extra); learned: by the shipped segmenter")
    p.add_argument("--masks", default="files", choices=MASK_SOURCES,
                   help=f"files: each subject's segmentation and brain mask (default); {automatic}")

    p = command("masks", _masks, "brain mask and tissue labels from a bare T1w (no FreeSurfer)")
    p.add_argument("t1", help="T1w NIfTI: whole head or skull-stripped, any orientation and voxel size")
    p.add_argument("--out", required=True, help="output folder: brainmask, wmparc, tissue_classes, masks.json, QC figure")
    p.add_argument("--method", default=MASKS_DEFAULT, choices=MASK_METHODS,
                   help=f"ants-atlas: atlas registration (needs the `masks` extra); learned: the shipped "
                        f"segmenter (default: {MASKS_DEFAULT})")
    p.add_argument("--no-figure", action="store_true", help="skip the QC figure")

    p = command("view", _view, "an interactive viewer page (NiiVue): T1w, prediction, reference, error map")
    p.add_argument("pred", help="predicted T2w NIfTI")
    p.add_argument("--t1", help="the input T1w (same grid)")
    p.add_argument("--ref", help="the acquired T2w (same grid): adds the error map")
    p.add_argument("--mask", help="brain mask (same grid): crops the views, needed for the error map and table")
    p.add_argument("--seg", help="FreeSurfer segmentation (same grid): per-tissue rows in the error table")
    p.add_argument("--out", required=True, help="the page to write (.html, self-contained)")
    p.add_argument("--title", help="page title")
    p.add_argument("--max-voxels", type=int, default=4_000_000,
                   help="per volume, after cropping; larger volumes are block-averaged (default 4,000,000)")

    p = command("inspect", _inspect, "summarise a prepared cache")
    p.add_argument("cache")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--patch-size", type=int, default=128)
    p.add_argument("--stride", type=int, default=24)

    p = command("labels", _labels, "print the FreeSurfer code -> tissue class table")
    p.add_argument("--markdown", action="store_true", help="as the Markdown page docs/labels.md")

    p = command("fixtures", _fixtures, "write tiny test subjects with a known label layout")
    p.add_argument("out")
    p.add_argument("--subjects", type=int, default=3)
    p.add_argument("--layout", default="hcp", choices=FIXTURE_LAYOUTS)
    p.add_argument("--seed", type=int, default=0)

    p = command("simulate", _simulate, "write synthetic T1w/T2w subjects from real anatomy")
    p.add_argument("out", help="output folder (HCP layout)")
    p.add_argument("--subjects", type=int, default=5)
    p.add_argument("--labels", help="a FreeSurfer label map, or a folder of them (one subject each); "
                                    "default: the MNI152 template shipped with nilearn")
    p.add_argument("--voxel-size", type=float, default=1.0, help="output voxel size in mm (1.0, or 0.7 as HCP)")
    p.add_argument("--seed", type=int, default=0, help="subject i uses seed + i")
    p.add_argument("--figure", action="store_true", help="also write simulated_subjects.png")

    p = command("train", _train, "train the paper's network (writes a run folder)")
    p.add_argument("--config", help="TOML config ([data], [model], [optim] tables)")
    p.add_argument("--out", help="run folder")
    p.add_argument("--resume", metavar="RUN", help="continue a stopped run from its checkpoint")
    p.add_argument("--preset", action="append", choices=list(PRESETS), help="named settings (repeatable)")
    p.add_argument("--set", action="append", metavar="SECTION.FIELD=VALUE", help="override any config field")
    p.add_argument("--cache", help="prepared cache (data.cache)")
    p.add_argument("--split", choices=SPLIT_KINDS)
    p.add_argument("--subject", help="within-subject split: the subject")
    p.add_argument("--train", help="comma-separated training subject ids")
    p.add_argument("--val", help="comma-separated validation subject ids")
    p.add_argument("--test", help="comma-separated test subject ids")
    p.add_argument("--channels", type=int, choices=CHANNELS, help="1: T1w only; 9: T1w + 8 tissue masks")
    p.add_argument("--norm", choices=METHODS)
    p.add_argument("--patch-size", type=int)
    p.add_argument("--stride", type=int)
    p.add_argument("--layers", type=int)
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:1, mps")
    p.add_argument("--seed", type=int)

    p = command("predict", _predict, "predict whole T2w volumes")
    p.add_argument("--model", required=True, help="model folder (RUN/model, or RUN/baselines/KIND)")
    p.add_argument("--t1", help="T1w NIfTI")
    p.add_argument("--seg", help="FreeSurfer segmentation on the T1w grid (models with tissue masks)")
    p.add_argument("--mask", help="brain mask on the T1w grid")
    p.add_argument("--subject", help="a prepared subject folder (CACHE/<id>) instead of files")
    p.add_argument("--data", help="predict every subject of a data folder (any layout) or prepared cache")
    p.add_argument("--out", help="output NIfTI (with --t1 or --subject)")
    p.add_argument("--out-dir", help="output folder (with --data): BIDS derivatives for BIDS input, "
                                     "else <id>.nii.gz per subject")
    layout = p.add_mutually_exclusive_group()
    layout.add_argument("--bids", action="store_true",
                        help="write BIDS derivatives (sub-X/[ses-Y/]anat/..._desc-mrsynth_T2w.nii.gz + JSON sidecar) "
                             "whatever the input layout")
    layout.add_argument("--flat", action="store_true", help="write <id>.nii.gz per subject, even for BIDS input")
    p.add_argument("--batch-size", type=int, default=8,
                   help="at most this many slices per batch (on a CPU also at most 2^18 pixels: a batch stays in cache)")
    p.add_argument("--device", default="auto")
    p.add_argument("--masks", default="files", choices=MASK_SOURCES,
                   help=f"files: --seg/--mask (or each subject's own); {automatic}")

    p = command("evaluate", _evaluate, "score predictions against acquired T2w")
    p.add_argument("--pred", required=True, help="predicted NIfTI, or a folder of <id>.nii.gz")
    p.add_argument("--ref", required=True, help="reference T2w NIfTI, or a prepared cache / data folder")
    p.add_argument("--mask", help="brain mask (single file)")
    p.add_argument("--seg", help="segmentation for per-tissue MSE (single file)")
    p.add_argument("--scale", default=SCORE_SCALES[0], choices=SCORE_SCALES)
    p.add_argument("--json", help="write every number to this JSON file")

    p = command("baselines", _baselines, "fit the tissue-mean and intensity-map baselines of a run")
    p.add_argument("run", help="run folder (baselines go to RUN/baselines/<kind>)")

    p = command("reproduce", _reproduce, "the paper's experiment grid: Tables 1-3, Figures 3-5, report")
    p.add_argument("--data", help="any supported layout (default: simulate subjects)")
    p.add_argument("--scale", default="small", choices=list(REPRODUCE_SCALES),
                   help="small: 2-core CPU in <= 45 min (default); paper: the paper's settings; tiny: tests")
    p.add_argument("--out", default="reproduction")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compare", metavar="EARLIER",
                   help="an earlier reproduction's folder (another simulator, other data): its effect sizes beside "
                        "this run's in the report")
    p.add_argument("--compare-label", default="earlier run", help="what to call it in the report")

    p = command("crossval", _crossval, "cross-validate over subjects: network vs both baselines on held-out volumes")
    p.add_argument("data", help="any supported layout, or a prepared cache")
    p.add_argument("--folds", default="loo", help="loo (leave one subject out, default) or a number of folds")
    p.add_argument("--config", help="TOML config for every fold's training")
    p.add_argument("--preset", action="append", choices=list(PRESETS), help="named settings (repeatable)")
    p.add_argument("--set", action="append", metavar="SECTION.FIELD=VALUE", help="override any config field")
    p.add_argument("--out", default="crossval", help="output folder (re-running resumes it)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--masks", default="files", choices=MASK_SOURCES,
                   help=f"files: each subject's own segmentation and brain mask (default); {automatic}")

    p = command("demo", _demo, "run the main job on the embedded default data")
    p.add_argument("--out", default="demo-output")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    verbosity = logs.QUIET if args.quiet else logs.VERBOSE if args.verbose else logs.NORMAL
    logs.configure(verbosity, bars=True if args.progress else None)
    log.debug("mrsynth %s, command %s", __version__, args.command)
    try:
        return args.handler(args)
    except InputError as error:
        log.error("mrsynth: error: %s", error)
        return 2
    except KeyboardInterrupt:
        log.error("mrsynth: interrupted")
        return 130
    except OSError as error:  # a full disk, a read-only folder, a file that vanished: the user's to fix
        if args.debug:
            raise
        where = f"{error.filename}: " if error.filename else ""
        log.error("mrsynth: error: %s%s", where, error.strerror or error)
        return 2
    except Exception as error:  # an internal error: one line and a hint, never a bare traceback by default
        if args.debug:
            raise
        log.error("mrsynth: internal error: %s: %s (run again with --debug for the traceback, and please "
                  "report it)", type(error).__name__, error)
        return 1


if __name__ == "__main__":
    sys.exit(main())
