"""A recipe's settings as a user gives them (``mrsynth pretrain --set name=value``): typed by the recipe's
configuration, each checked against what it allows before anything runs, refused in one line naming the setting,
the value and what is allowed."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from ..checks import Each, Range, at_least, positive
from ..errors import InputError
from ..runtime import Device
from .configfile import convert_value

#: What each setting of a recipe allows (a setting not named here: any value of its type).
CHECKS = {
    "map_indices": Each(Range(1, 10_000)),
    "steps": Range(1, 10_000_000),
    "lesion_steps": Range(0, 10_000_000),
    "batch": Range(1, 4096),
    "crop": Range(16, 1024),
    "lr": Range(0, 10, low_open=True),
    "lesion_lr": Range(0, 10, low_open=True),
    "features": Each(Range(1, 1024), count=6),
    "context": Range(0, 8),
    "pool": Range(1, 1000),
    "subject_every": at_least(1),
    "workers": Range(0, 64),
    "loss_margin_mm": Range(0, 50),
    "clip": at_least(0),
    "seed": Range(0, 2**31 - 1),
    "checkpoint_every": at_least(1),
    "device": Device(),
    "lesion_odds": Each(Range(0, 1), count=2),
    "lesion_crops": Range(0, 1),
    "lesion_weight": positive(),
    "per_map": Range(1, 1000),
    "strip_probability": Range(0, 1),
    "random_head_probability": Range(0, 1),
    "vessel_probability": Range(0, 1),
    "vessel_weight": positive(),
}


def parse_settings(config_type, items: list[str]) -> dict:
    """``name=value`` strings as the typed settings of a recipe's configuration class."""
    hints = typing.get_type_hints(config_type)
    known = [f.name for f in dataclasses.fields(config_type)]
    out = {}
    for item in items:
        name, sep, value = (part.strip() for part in item.partition("="))
        if not sep:
            raise InputError(f"--set {item!r} must look like name=value")
        if name not in hints:
            raise InputError(f"--set {name}: not a setting of this recipe (its settings: {', '.join(known)})")
        out[name] = _typed(value, hints[name], name)
    return out


def _typed(value: str, kind, name: str) -> Any:
    """A setting's text as its type: a tuple from comma-separated values."""
    if typing.get_origin(kind) is tuple:
        item = typing.get_args(kind)[0]
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if not parts:
            raise InputError(f"--set {name} = {value!r}: must be a comma-separated list")
        return tuple(convert_value(p, item, name) for p in parts)
    return convert_value(value, kind, name)


def check_settings(config) -> None:
    """Refuse a recipe configuration with a value its setting does not allow."""
    for field in dataclasses.fields(config):
        check, value = CHECKS.get(field.name), getattr(config, field.name)
        problem = check.problem(list(value) if isinstance(value, tuple) else value) if check else None
        if problem:
            shown = ",".join(map(str, value)) if isinstance(value, tuple) else repr(value)
            raise InputError(f"setting {field.name} = {shown}: {problem}")
