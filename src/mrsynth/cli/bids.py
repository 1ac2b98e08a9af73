"""``mrsynth bids``: the BIDS App's command line (arguments and handler), over :mod:`mrsynth.experiments.bids_app`."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from ..errors import InputError


def bids_command(command) -> None:
    """``mrsynth bids``: its arguments, in the BIDS Apps convention."""
    from ..experiments.bids_app import LEVELS
    from ..masks import DEFAULT_METHOD, MASK_METHODS

    p = command(
        "bids",
        "a BIDS App: every T1w of a BIDS dataset given a synthetic T2w, brain mask, uncertainty map and report",
        "device",
    )
    p.add_argument("bids_dir", help="the raw BIDS dataset (read only)")
    p.add_argument("output_dir", help="where the derivatives go (e.g. BIDS_DIR/derivatives/mrsynth)")
    p.add_argument("analysis_level", choices=LEVELS, help="participant: synthesize; group: the summary and index")
    p.add_argument(
        "--participant-label",
        nargs="+",
        default=[],
        metavar="LABEL",
        help="the participants to process (01 or sub-01; default: all); one per job on a cluster",
    )
    p.add_argument("--session-label", nargs="+", default=[], metavar="LABEL", help="the sessions (default: all)")
    p.add_argument("--model", default="pretrained", help="pretrained (default: the shipped model) or a model folder")
    p.add_argument(
        "--skip-existing",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="skip each T1w already synthesized from the same file by the same model (default: on)",
    )
    p.add_argument(
        "--mask-method",
        default=DEFAULT_METHOD,
        choices=MASK_METHODS,
        help=f"how each brain mask is computed from its T1w (default {DEFAULT_METHOD})",
    )
    p.add_argument("--batch-size", type=int, default=8, help="at most this many slices per batch")


def run_bids(args) -> int:
    """Run ``mrsynth bids`` at its analysis level."""
    from ..experiments import bids_app
    from ..runtime import pick_device

    if args.analysis_level == "group":
        summary, index = bids_app.group(Path(args.bids_dir), Path(args.output_dir))
        print(f"wrote {summary} and {index}")
        return 0
    if args.batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {args.batch_size}")
    outcome = bids_app.participant(
        Path(args.bids_dir),
        Path(args.output_dir),
        args.participant_label,
        args.session_label,
        model=args.model,
        skip_existing=args.skip_existing,
        masks=args.mask_method,
        command=shlex.join(args.command_line),
        progress=True,
        batch_size=args.batch_size,
        device=pick_device(args.device),
    )
    print(
        f"{len(outcome.written)} T1w synthesized, {len(outcome.skipped)} skipped (done before), "
        f"{len(outcome.failed)} failed; in {args.output_dir}"
    )
    if outcome.failed:
        raise InputError(f"{len(outcome.failed)} T1w could not be synthesized: {', '.join(outcome.failed)}")
    return 0
