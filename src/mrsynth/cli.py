"""The ``mrsynth`` command line: a thin layer over the Python API.

Exit codes: 0 success, 2 bad input (the message names the file and the problem).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from . import __version__, labels
from .errors import InputError


def _prepare(args) -> int:
    from .cache import prepare_all
    from .subjects import discover

    subjects = discover(args.root, args.layout)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = prepare_all(subjects, args.out, axis=args.axis, jobs=args.jobs,
                             strict=args.strict, force=args.force, progress=not args.quiet)
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    for status in ("prepared", "up-to-date"):
        print(f"{status}: {len(report.by_status(status))}")
    if report.failed:
        print(f"failed: {len(report.failed)}", file=sys.stderr)
        for result in report.failed:
            print(f"  {result.id}: {result.message}", file=sys.stderr)
    return 2 if report.failed and len(report.failed) == len(report.results) else 0


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
                               voxel_size=args.voxel_size, seed=args.seed, progress=not args.quiet)
    print(f"simulated {len(folders)} subject(s) in the HCP layout under {args.out}")
    if args.figure:
        print(f"figure: {write_figure(folders[:4], Path(args.out) / 'simulated_subjects.png')}")
    return 0


def _demo(args) -> int:
    from .demo import run_demo

    run_demo(Path(args.out))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mrsynth", description="Predict T2w MRI from T1w MRI.")
    parser.add_argument("--version", action="version", version=f"mrsynth {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("prepare", help="validate subjects and write the prepared cache")
    p.add_argument("root", help="HCP folder, BIDS dataset or CSV manifest")
    p.add_argument("--out", required=True, help="cache folder")
    p.add_argument("--layout", default="auto", choices=["auto", "hcp", "bids", "csv"])
    p.add_argument("--axis", default="axial",
                   help="slicing axis: axial (default, as in the paper), coronal, sagittal or 0/1/2")
    p.add_argument("--jobs", type=int, default=1, help="subjects prepared in parallel")
    p.add_argument("--strict", action="store_true", help="stop at the first bad subject")
    p.add_argument("--force", action="store_true", help="rebuild subjects even if up to date")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_prepare)

    p = commands.add_parser("inspect", help="summarise a prepared cache")
    p.add_argument("cache")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--patch-size", type=int, default=128)
    p.add_argument("--stride", type=int, default=24)
    p.set_defaults(run=_inspect)

    p = commands.add_parser("labels", help="print the FreeSurfer code -> tissue class table")
    p.add_argument("--markdown", action="store_true", help="as the Markdown page docs/labels.md")
    p.set_defaults(run=_labels)

    p = commands.add_parser("fixtures", help="write tiny test subjects with a known label layout")
    p.add_argument("out")
    p.add_argument("--subjects", type=int, default=3)
    p.add_argument("--layout", default="hcp", choices=["hcp", "hcp-flat", "bids", "csv"])
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=_fixtures)

    p = commands.add_parser("simulate", help="write synthetic T1w/T2w subjects from real anatomy")
    p.add_argument("out", help="output folder (HCP layout)")
    p.add_argument("--subjects", type=int, default=5)
    p.add_argument("--labels", help="a FreeSurfer label map, or a folder of them (one subject each); "
                                    "default: the MNI152 template shipped with nilearn")
    p.add_argument("--voxel-size", type=float, default=1.0, help="output voxel size in mm (1.0, or 0.7 as HCP)")
    p.add_argument("--seed", type=int, default=0, help="subject i uses seed + i")
    p.add_argument("--figure", action="store_true", help="also write simulated_subjects.png")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_simulate)

    p = commands.add_parser("demo", help="run the main job on the embedded default data")
    p.add_argument("--out", default="demo-output")
    p.set_defaults(run=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except InputError as error:
        print(f"mrsynth: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
