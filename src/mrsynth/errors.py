"""The exception types the command line turns into exit codes: bad user input (2), and an interruption by a signal
(128 + its number, as a shell reports a process a signal ended)."""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """Bad input: a missing, unreadable or inconsistent file, or a bad option.

    The message always names the file (when there is one) and the problem.
    """

    def __init__(self, problem: str, path: str | Path | None = None):
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path is not None else problem)


class Interrupted(KeyboardInterrupt):
    """A command stopped by SIGINT or SIGTERM, after keeping what it could (a checkpoint, no partial output)."""

    def __init__(self, signal_number: int):
        import signal

        self.signal = int(signal_number)
        super().__init__(signal.Signals(self.signal).name)
