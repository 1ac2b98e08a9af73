"""A training configuration read from a TOML file, presets and overrides (each value typed, then checked by
:func:`~.config.validate`), written back as TOML, and listed as the settings reference of docs/training.md."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from .. import networks
from ..checks import OneOf, type_words
from ..errors import InputError
from .config import CHANNELS, PRESETS, ModelConfig, TrainConfig, validate


def convert_value(value: Any, kind, name: str):
    """A setting's value read as its type; an :class:`InputError` naming the setting, the value and the type."""
    try:
        return _typed(value, kind)
    except (TypeError, ValueError):
        raise InputError(f"config field {name} = {value!r}: must be {type_words(kind)}") from None


def _typed(value: Any, kind):
    """``value`` (a TOML value or an override's text) as ``kind``, refusing what would only pass by accident
    (``3.7`` as a whole number, ``2`` as true or false)."""
    if get_origin(kind) is list:
        if isinstance(value, str):
            value = [v for v in (p.strip() for p in value.split(",")) if v]
        if not isinstance(value, (list, tuple)):
            raise TypeError(value)
        return [_typed(v, get_args(kind)[0]) for v in value]
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ValueError(value)
    if kind is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(value)
        return int(value)
    if kind is float and isinstance(value, bool):
        raise ValueError(value)
    if kind is str and not isinstance(value, str):
        raise TypeError(value)
    return kind(value)


def _fill(cls, values: dict, prefix: str = ""):
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise InputError(f"unknown config field(s): {', '.join(prefix + u for u in unknown)}")
    kwargs = {}
    for f in fields(cls):
        if f.name not in values:
            continue
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            if not isinstance(values[f.name], dict):
                raise InputError(f"config field {prefix}{f.name} must be a table")
            fill = _fill_model if kind is ModelConfig else _fill
            kwargs[f.name] = fill(kind, values[f.name], f"{prefix}{f.name}.")
        else:
            kwargs[f.name] = convert_value(values[f.name], kind, prefix + f.name)
    return cls(**kwargs)


def _fill_model(cls, values: dict, prefix: str) -> ModelConfig:
    """``[model]``: ``kind``, ``lookup``, and the parameters of that kind (typed by its constructor)."""
    values = dict(values)
    trainable = networks.kinds(trainable=True)
    kind = convert_value(values.pop("kind", "fcn"), str, f"{prefix}kind")
    if kind not in trainable:
        raise InputError(f"config field {prefix}kind = {kind!r}: must be {OneOf(trainable)}")
    lookup = convert_value(values.pop("lookup", False), bool, f"{prefix}lookup")
    own = {p.name: p for p in networks.parameters(kind)}
    params = {}
    for key, value in values.items():
        if key in own:
            params[key] = convert_value(value, own[key].kind, prefix + key)
            continue
        owner = next((k for k in trainable if key in networks.defaults(k)), None)
        if owner is None:
            raise InputError(f"unknown config field {prefix}{key}")
        # another kind's parameter at its default changes nothing: run folders of mrsynth before the stage
        # packages list every kind's parameters
        parameter = next(p for p in networks.parameters(owner) if p.name == key)
        if convert_value(value, parameter.kind, prefix + key) != parameter.default:
            raise InputError(
                f"config field {prefix}{key} is a parameter of `{owner}` networks; this model is "
                f"`{kind}` (its parameters: {', '.join(own) or 'none'})"
            )
    return cls(kind, lookup, params)


def load_config(
    path: str | Path | None = None, overrides: list[str] = (), presets: list[str] = (), inherit: bool = True
) -> TrainConfig:
    """Defaults <- presets <- TOML file <- overrides, in order (later wins); with ``init``, the model's network and
    input contract wherever none of them sets a field (``inherit``; a run folder's own file sets every field).

    Setting ``model.kind`` to another kind drops the model parameters set before it (another kind's), so a
    preset's or a file's network can be swapped for another by one override.
    """
    values: dict = {}
    for name in presets:
        if name not in PRESETS:
            raise InputError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
        _merge(values, _parse_overrides(PRESETS[name].settings))
    if path:
        path = Path(path)
        try:
            _merge(values, tomllib.loads(path.read_text()))
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise InputError(f"cannot read config: {error}", path) from error
    for override in overrides:
        _merge(values, _parse_overrides([override]))
    if inherit:
        _inherit_from_init(values)
    return validate(_fill(TrainConfig, values))


def _inherit_from_init(values: dict) -> None:
    """The network (``model.*``, unless ``model.kind`` is set) and input contract (each of ``INHERITED`` not set)
    of the model ``init`` names, into ``values``: a fine-tuned model keeps its parent's grid, channels,
    normalization and brain-only output unless asked otherwise."""
    init = values.get("init")
    if not init:
        return
    parent = networks.read_description(init)
    spec = parent.spec
    if "kind" not in values.get("model", {}):
        values["model"] = {"kind": parent.kind, "lookup": parent.lookup, **parent.params, **values.get("model", {})}
    contract = {
        "context": spec.context,
        "channels": CHANNELS[-1] if spec.tissue_masks else CHANNELS[0],
        "strip": spec.strip,
        "norm": spec.normalization.method,
        "grid_mm": spec.grid_mm,
        "brain_only": spec.brain_only,
        "footprint": spec.footprint,
    }
    data = values.setdefault("data", {})
    for key, value in contract.items():
        data.setdefault(key, value)


def _parse_overrides(overrides) -> dict:
    values: dict = {}
    for item in overrides:
        if "=" not in item:
            raise InputError(f"override {item!r} must look like section.field=value")
        key, value = item.split("=", 1)
        node = values
        *parents, leaf = key.strip().split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value.strip()
    return values


def _merge(into: dict, new: dict) -> None:
    old_model, new_model = into.get("model"), new.get("model")
    if isinstance(old_model, dict) and isinstance(new_model, dict) and "kind" in new_model:
        if new_model["kind"] != old_model.get("kind", "fcn"):  # another network: its parameters start afresh
            into["model"] = {k: v for k, v in old_model.items() if k in ("kind", "lookup")}
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def reference_markdown() -> str:
    """Every configuration field (with type, default, allowed values and meaning) and every preset, as Markdown.

    ``docs/training.md`` holds this text (a test keeps the two equal); ``mrsynth train --list-settings`` prints
    it.
    """
    lines = ["| field | type | default | allowed | meaning |", "|---|---|---|---|---|"]

    def row(name: str, kind, default, doc: str, check=None) -> None:
        allowed = "any" if check is None else str(check)
        kind_name = getattr(kind, "__name__", str(kind))
        lines.append(f"| `{name}` | {kind_name} | `{_toml_value(default)}` | {allowed} | {doc} |")

    def rows(cls, prefix: str) -> None:
        hints = get_type_hints(cls)
        for f in fields(cls):
            if dataclasses.is_dataclass(hints[f.name]):
                continue
            if cls is ModelConfig and f.name == "params":
                for kind in networks.kinds(trainable=True):
                    for p in networks.parameters(kind):
                        row(f"{prefix}{p.name}", p.kind, p.default, f"{kind}: {p.doc}", p.check)
                continue
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            check = OneOf(networks.kinds(trainable=True)) if (cls, f.name) == (ModelConfig, "kind") else None
            row(prefix + f.name, hints[f.name], default, f.metadata.get("doc", ""), f.metadata.get("check") or check)

    rows(TrainConfig, "")
    for f in fields(TrainConfig):
        if dataclasses.is_dataclass(get_type_hints(TrainConfig)[f.name]):
            rows(get_type_hints(TrainConfig)[f.name], f"{f.name}.")
    lines += ["", "| preset | settings | why |", "|---|---|---|"]
    lines += [f"| `{name}` | `{' '.join(p.settings)}` | {p.doc} |" for name, p in PRESETS.items()]
    return "\n".join(lines) + "\n"


def to_toml(config) -> str:
    """The config as TOML (reloadable with :func:`load_config`); ``[model]`` with its kind's parameters inline."""
    if isinstance(config, ModelConfig):
        items = {"kind": config.kind, "lookup": config.lookup, **config.params}
        return "\n".join(f"{name} = {_toml_value(value)}" for name, value in items.items()) + "\n"
    scalars, tables = [], []
    for f in fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            tables.append(f"\n[{f.name}]\n" + to_toml(value))
        else:
            scalars.append(f"{f.name} = {_toml_value(value)}")
    return "\n".join(scalars) + "\n" + "".join(tables)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")
