"""The one exception type for bad user input (the CLI turns it into exit code 2)."""

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
