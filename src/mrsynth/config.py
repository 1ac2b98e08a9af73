"""Typed run configuration: dataclasses loaded from TOML, overridden from the CLI, saved with every run.

A config file has three tables, ``[data]``, ``[model]`` and ``[optim]``, plus top-level
keys (``seed``, ``device``, ...); any field missing takes the default below.  Overrides
are ``section.field=value`` strings (``optim.lr=0.001``), parsed by the field's type.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from .errors import InputError


@dataclass
class DataConfig:
    cache: str = ""  # prepared cache folder (mrsynth prepare)
    split: str = "across"  # "across" (subject lists) or "within" (one subject's patches, 80/1/19)
    train: list[str] = field(default_factory=list)  # across: training subjects (empty: all not in val/test)
    val: list[str] = field(default_factory=list)
    test: list[str] = field(default_factory=list)
    subject: str = ""  # within: the subject (empty: the first)
    fractions: list[float] = field(default_factory=lambda: [0.80, 0.01, 0.19])
    patch_size: int = 128
    stride: int = 24
    channels: int = 9  # 1 (T1w) or 9 (T1w + eight tissue masks)
    norm: str = "robust"  # or "paper"
    max_patches_per_epoch: int = 0  # 0: every training patch each epoch; else a fresh random subset
    max_eval_patches: int = 0  # 0: score every validation / test patch; else a fixed seeded subset
    sampling: str = "patches"  # "patches": the paper's overlapping grid; "tiles": each slice covered ~once
    tile_size: int = 128  # with sampling = "tiles"


@dataclass
class ModelConfig:
    layers: int = 9
    width: int = 32


@dataclass
class OptimConfig:
    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-3  # the paper's 0.1 diverges with Adam here (see docs/training.md); preset "paper" keeps it
    lr_step_epochs: int = 4  # halve the learning rate every 4 epochs (paper)
    lr_gamma: float = 0.5
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-9


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    seed: int = 0
    device: str = "auto"  # auto: CUDA, then MPS, then CPU
    workers: int = 0  # DataLoader worker processes
    channels_last: bool = True  # NHWC memory layout: faster convolutions on CPUs and GPUs
    compile: bool = False  # torch.compile the training step (falls back to eager if it fails)
    bn_recalibration_batches: int = 50  # before export (cumulative BatchNorm statistics)
    val_recalibration_batches: int = 8  # before each epoch's validation


PRESETS = {
    # The paper, section 4.2: Adam lr 0.1 halved every 4 epochs; batch 32 and 20 epochs for
    # one training subject, batch 128 and 8 epochs for several.
    "paper": ["optim.lr=0.1", "optim.lr_step_epochs=4", "optim.lr_gamma=0.5", "optim.eps=1e-9",
              "data.patch_size=128", "data.stride=24", "data.norm=paper"],
    "paper-one-subject": ["optim.batch_size=32", "optim.epochs=20"],
    "paper-many-subjects": ["optim.batch_size=128", "optim.epochs=8"],
    # Tile training with small steps: reaches the paper protocol's test MSE several times
    # sooner on a CPU (benchmarks/RESULTS.md, tile_training). Needs an across-subject split.
    "fast": ["data.sampling=tiles", "data.tile_size=64", "optim.batch_size=8"],
}


def _convert(value: Any, kind, name: str):
    origin = get_origin(kind)
    try:
        if origin is list:
            item = get_args(kind)[0]
            if isinstance(value, str):
                value = [v for v in (p.strip() for p in value.split(",")) if v]
            return [_convert(v, item, name) for v in value]
        if kind is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return value.lower() in ("true", "1", "yes")
            return bool(value)
        return kind(value)
    except (TypeError, ValueError) as error:
        raise InputError(f"config field {name}: cannot read {value!r} as {kind}") from error


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
            kwargs[f.name] = _fill(kind, values[f.name], f"{prefix}{f.name}.")
        else:
            kwargs[f.name] = _convert(values[f.name], kind, prefix + f.name)
    return cls(**kwargs)


def load_config(path: str | Path | None = None, overrides: list[str] = (), presets: list[str] = ()) -> TrainConfig:
    """Defaults <- presets <- TOML file <- overrides (later wins)."""
    values: dict = {}
    for name in presets:
        if name not in PRESETS:
            raise InputError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
        _merge(values, _parse_overrides(PRESETS[name]))
    if path:
        path = Path(path)
        try:
            _merge(values, tomllib.loads(path.read_text()))
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise InputError(f"cannot read config: {error}", path) from error
    _merge(values, _parse_overrides(overrides))
    return _fill(TrainConfig, values)


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
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def to_toml(config) -> str:
    """The config as TOML (reloadable with :func:`load_config`)."""
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
