"""Allowed values of a setting, declared once beside it and checked where the setting is read.

A check says what is wrong with a value (``problem``: ``None`` when it is allowed) and, as text, what is
allowed (for messages and the configuration reference).  The configuration, the network kinds' parameters
and the augmentations declare theirs with the setting itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

#: How a person reads each setting type, for messages about values of the wrong type.
TYPE_WORDS = {int: "a whole number", float: "a number", bool: "true or false", str: "text"}


def type_words(kind) -> str:
    """``list[int]`` -> "a comma-separated list of whole numbers"; ``int`` -> "a whole number"."""
    args = getattr(kind, "__args__", None)
    if args:
        return f"a comma-separated list of {TYPE_WORDS.get(args[0], 'values').removeprefix('a ')}s"
    return TYPE_WORDS.get(kind, getattr(kind, "__name__", str(kind)))


@dataclass(frozen=True)
class Range:
    """A number from ``low`` to ``high`` (either may be open or absent)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            return f"must be {self}"
        too_low = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        too_high = self.high is not None and (value >= self.high if self.high_open else value > self.high)
        return f"must be {self}" if too_low or too_high else None

    def __str__(self) -> str:
        if self.low is not None and self.high is not None and not (self.low_open or self.high_open):
            return f"{self.low:g} to {self.high:g}"
        low = None if self.low is None else f"{'above' if self.low_open else 'at least'} {self.low:g}"
        high = None if self.high is None else f"{'below' if self.high_open else 'at most'} {self.high:g}"
        return " and ".join(part for part in (low, high) if part) or "any number"


def at_least(low: float) -> Range:
    return Range(low)


def positive() -> Range:
    return Range(0, low_open=True)


@dataclass(frozen=True)
class OneOf:
    """One of a few choices."""

    choices: tuple

    def problem(self, value: Any) -> str | None:
        return None if value in self.choices else f"must be {self}"

    def __str__(self) -> str:
        return "one of " + ", ".join(str(c) for c in self.choices)


@dataclass(frozen=True)
class Each:
    """A list whose every item passes ``item`` (and, with ``count``, that many items)."""

    item: Range | OneOf
    count: int | None = None

    def problem(self, value: Any) -> str | None:
        if self.count is not None and len(value) != self.count:
            return f"must be {self}"
        return f"must be {self}" if any(self.item.problem(v) for v in value) else None

    def __str__(self) -> str:
        many = f"{self.count} values" if self.count is not None else "values"
        return f"{many}, each {self.item}"


@dataclass(frozen=True)
class Fractions:
    """``count`` fractions of a whole: each at least 0, together 1."""

    count: int

    def problem(self, value: Any) -> str | None:
        if len(value) != self.count or min(value) < 0 or abs(sum(value) - 1) > 1e-6:
            return f"must be {self}"
        return None

    def __str__(self) -> str:
        return f"{self.count} fractions, each at least 0, summing to 1"


@dataclass(frozen=True)
class ZeroOr:
    """0 (the setting off), or a value that ``otherwise`` allows."""

    otherwise: Range

    def problem(self, value: Any) -> str | None:
        return (
            None
            if value == 0 and not isinstance(value, bool)
            else (f"must be {self}" if self.otherwise.problem(value) else None)
        )

    def __str__(self) -> str:
        return f"0, or {self.otherwise}"
