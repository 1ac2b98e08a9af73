"""Messages and progress bars, the same on every command.

Messages go through :mod:`logging` (logger ``mrsynth``) to standard error; the CLI's
``--quiet`` shows warnings and errors only, ``--verbose`` adds debug detail.  Progress
bars (tqdm) are drawn only on a terminal, or when asked for (``--progress`` or
``MRSYNTH_PROGRESS=1``): in a log file their redraws would run together into long lines,
so long loops also log one concise line per epoch or subject instead.
"""

from __future__ import annotations

import logging
import os
import sys

from tqdm.auto import tqdm

log = logging.getLogger("mrsynth")
QUIET, NORMAL, VERBOSE = -1, 0, 1
_forced_bars: bool | None = None


class _StandardError(logging.StreamHandler):
    """A handler that writes to the current ``sys.stderr`` (which notebooks and tests replace)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def configure(verbosity: int = NORMAL, bars: bool | None = None) -> None:
    """Send ``mrsynth`` messages to standard error at the given verbosity; ``bars`` forces bars on/off."""
    global _forced_bars
    level = {QUIET: logging.WARNING, NORMAL: logging.INFO, VERBOSE: logging.DEBUG}[verbosity]
    log.setLevel(level)
    for handler in list(log.handlers):
        log.removeHandler(handler)
    handler = _StandardError()
    handler.setFormatter(
        logging.Formatter("%(message)s" if verbosity < VERBOSE else "%(levelname)s %(name)s: %(message)s")
    )
    log.addHandler(handler)
    log.propagate = False
    _forced_bars = False if verbosity == QUIET else bars


def bars_wanted(allowed: bool = True) -> bool:
    """Whether to draw progress bars: allowed by the caller, and on a terminal or asked for."""
    if not allowed:
        return False
    if _forced_bars is not None:
        return _forced_bars
    if os.environ.get("MRSYNTH_PROGRESS") in ("0", "1"):
        return os.environ["MRSYNTH_PROGRESS"] == "1"
    return sys.stderr.isatty()


def bar(iterable=None, allowed: bool = True, **options) -> tqdm:
    """A tqdm progress bar, disabled unless :func:`bars_wanted`."""
    return tqdm(iterable, disable=not bars_wanted(allowed), **options)
