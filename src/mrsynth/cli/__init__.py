"""The command line: ``mrsynth <command>``, a thin layer over the Python API.

:mod:`.parser` declares every command and option (shared options once); :mod:`.commands` runs them; :mod:`.bids`
is the BIDS App's command (``mrsynth bids``), both its arguments and its handler.

Results (tables, JSON, written paths) go to standard output; messages go through :mod:`mrsynth.logs` to
standard error, the same on every command: ``--quiet``, ``--verbose`` and ``--progress`` (bars even when
standard error is not a terminal).

Exit codes: 0 success, 2 bad input (the message names the file and the problem), 1 an internal error, 128 + N when
signal N (SIGINT, SIGTERM) stopped it: both end a command as Ctrl-C does, what it wrote whole or absent (a pretraining
writes its checkpoint first).
"""

from __future__ import annotations

import signal
import sys
import threading

from .. import __version__, logs
from ..errors import InputError, Interrupted
from ..logs import log
from .commands import HANDLERS
from .parser import build_parser as _build_parser


def build_parser():
    """The ``mrsynth`` argument parser, every subcommand with its handler."""
    return _build_parser(HANDLERS)


def _terminated(number, _frame) -> None:
    raise Interrupted(number)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.command_line = ["mrsynth", *(sys.argv[1:] if argv is None else argv)]  # what a record of the run quotes
    if threading.current_thread() is not threading.main_thread():  # only the main thread may handle signals
        return _run(args)
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        return _run(args)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args) -> int:
    verbosity = logs.QUIET if args.quiet else logs.VERBOSE if args.verbose else logs.NORMAL
    logs.configure(verbosity, bars=True if args.progress else None)
    log.debug("mrsynth %s, command %s", __version__, args.command)
    try:
        return args.handler(args)
    except InputError as error:
        log.error("mrsynth: error: %s", error)
        return 2
    except KeyboardInterrupt as stop:
        number = getattr(stop, "signal", signal.SIGINT)
        log.error("mrsynth: interrupted (%s)", signal.Signals(number).name)
        return 128 + number
    except OSError as error:  # a full disk, a read-only folder, a file that vanished: the user's to fix
        if args.debug:
            raise
        where = f"{error.filename}: " if error.filename else ""
        log.error("mrsynth: error: %s%s", where, error.strerror or error)
        return 2
    except Exception as error:  # an internal error: one line and a hint, never a bare traceback by default
        if args.debug:
            raise
        log.error(
            "mrsynth: internal error: %s: %s (run again with --debug for the traceback, and please report it)",
            type(error).__name__,
            error,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
