"""Typed run configuration: dataclasses loaded from TOML, overridden from the CLI, saved with every run.

A config file has four tables, ``[data]``, ``[model]``, ``[optim]`` and ``[augment]``, plus top-level
keys (``seed``, ``device``, ...); any field missing takes the default below.  Overrides
are ``section.field=value`` strings (``optim.lr=0.001``), parsed by the field's type.
``[model]`` holds ``kind``, ``lookup`` and that kind's own parameters (:mod:`mrsynth.networks.registry`);
``[augment]`` one field per setting of :mod:`mrsynth.data.augment`.
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

from .. import networks
from ..data import PAPER_FRACTIONS, AugmentConfig
from ..errors import InputError


def _field(default=dataclasses.MISSING, doc: str = "", factory=dataclasses.MISSING):
    """A dataclass field with its documentation (``reference_markdown`` prints it)."""
    return field(default=default, default_factory=factory, metadata={"doc": doc})


@dataclass
class DataConfig:
    cache: str = _field("", "prepared cache folder (`mrsynth prepare`)")
    split: str = _field("across", "`across` (subject lists) or `within` (one subject's patches, split by `fractions`)")
    train: list[str] = _field(factory=list, doc="across: training subjects (empty: all not in val/test)")
    val: list[str] = _field(factory=list, doc="across: validation subjects")
    test: list[str] = _field(factory=list, doc="across: test subjects")
    subject: str = _field("", "within: the subject (empty: the first)")
    fractions: list[float] = _field(
        factory=lambda: list(PAPER_FRACTIONS), doc="within: train/val/test fractions (the paper's 80/1/19)"
    )
    patch_size: int = _field(128, "patch side in pixels (the paper: 128)")
    stride: int = _field(24, "patch grid stride in pixels (the paper: 24)")
    channels: int = _field(9, "1 (T1w) or 9 (T1w + eight tissue masks)")
    norm: str = _field(
        "robust",
        "`robust` (each volume by its brain median), `percentile` (by its brain 99th "
        "percentile), `histogram` (T1w histogram standardized to the training "
        "landmarks, T2w as `percentile`) or `paper` (training-set mean subtracted)",
    )
    max_patches_per_epoch: int = _field(0, "0: every training patch each epoch; else a fresh random subset")
    max_eval_patches: int = _field(0, "0: score every validation / test patch; else a fixed seeded subset")
    sampling: str = _field("patches", "`patches`: the paper's overlapping grid; `tiles`: each slice covered about once")
    tile_size: int = _field(128, 'tile side in pixels, with `sampling = "tiles"`')
    min_brain: float = _field(
        0.0,
        "training patches or tiles with a smaller fraction of brain pixels are left out "
        "(0: all; a tile of background teaches nothing about the brain)",
    )
    context: int = _field(0, "2.5D input: neighbouring slices on each side given as extra T1w channels (0: 2D)")
    strip: bool = _field(
        False,
        "T1w set to 0 outside the brain mask, in training and prediction alike "
        "(whole-head and skull-stripped inputs then look the same to the network)",
    )


@dataclass
class ModelConfig:
    """The network: its ``kind``, whether it corrects a lookup table, and the kind's own parameters (``params``,
    each readable as an attribute: ``config.model.layers``)."""

    kind: str = _field(
        "fcn", "a trainable network kind: `fcn` (the paper's network) or `unet` (a small 2D U-Net, MONAI's BasicUNet)"
    )
    lookup: bool = _field(
        False,
        "predict a correction to a T1w -> T2w lookup table fitted on the training brains "
        "(the table is also an input channel)",
    )
    params: dict = _field(factory=dict, doc="the kind's own parameters (`model.<name>` in files and overrides)")

    def __post_init__(self):
        self.params = {**networks.defaults(self.kind), **self.params}

    def __getattr__(self, name: str):
        params = self.__dict__.get("params", {})
        if name in params:
            return params[name]
        raise AttributeError(f"model has no setting {name!r}")


@dataclass
class OptimConfig:
    epochs: int = _field(20, "training epochs")
    batch_size: int = _field(32, "patches per step (the global batch under torchrun)")
    lr: float = _field(1e-3, "Adam learning rate (the paper's 0.1 diverges here; preset `paper` keeps it)")
    lr_step_epochs: int = _field(4, "multiply the learning rate by `lr_gamma` every this many epochs (paper: 4)")
    lr_gamma: float = _field(0.5, "learning-rate decay factor (paper: halve)")
    beta1: float = _field(0.9, "Adam beta1 (paper)")
    beta2: float = _field(0.999, "Adam beta2 (paper)")
    eps: float = _field(1e-9, "Adam epsilon (paper)")
    loss: str = _field("mse", "`mse` (the paper), `l1`, or `l1+ssim` (L1 plus 0.5 x (1 - SSIM))")
    clip: float = _field(
        0.0,
        "clip each step's gradient to this norm (0: off): a rare step's huge gradient then "
        "cannot throw a network without normalization layers off course",
    )
    ema: float = _field(
        0.0,
        "export an exponential moving average of the weights with this decay per step "
        "(e.g. 0.999; 0: the last weights)",
    )


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    seed: int = _field(0, "initial weights and the patch order of every epoch")
    device: str = _field("auto", "`auto` (CUDA, then MPS, then CPU), `cpu`, `cuda`, `cuda:1`, `mps`")
    workers: int = _field(0, "DataLoader worker processes")
    channels_last: bool = _field(True, "NHWC memory layout: faster convolutions on CPUs and GPUs")
    compile: bool = _field(False, "`torch.compile` the training step (falls back to eager if it fails)")
    bn_recalibration_batches: int = _field(50, "batches for the BatchNorm statistics before export")
    val_recalibration_batches: int = _field(8, "batches for the BatchNorm statistics before each validation")


@dataclass(frozen=True)
class Preset:
    """Named settings (``--preset NAME``) and why they exist."""

    doc: str
    settings: tuple[str, ...]


PRESETS = {
    "paper": Preset(
        "the paper, section 4.2: Adam lr 0.1 halved every 4 epochs, eps 1e-9, 128/24 patches, mean subtraction",
        (
            "optim.lr=0.1",
            "optim.lr_step_epochs=4",
            "optim.lr_gamma=0.5",
            "optim.eps=1e-9",
            "data.patch_size=128",
            "data.stride=24",
            "data.norm=paper",
        ),
    ),
    "paper-one-subject": Preset(
        "the paper's schedule for one training subject: batch 32, 20 epochs", ("optim.batch_size=32", "optim.epochs=20")
    ),
    "paper-many-subjects": Preset(
        "the paper's schedule for several training subjects: batch 128, 8 epochs",
        ("optim.batch_size=128", "optim.epochs=8"),
    ),
    "fast": Preset(
        "tile training with small steps: reaches the paper protocol's test MSE several times sooner "
        "on a CPU (benchmarks/RESULTS.md, tile_training); needs an across-subject split",
        ("data.sampling=tiles", "data.tile_size=64", "optim.batch_size=8"),
    ),
    "quality": Preset(
        "the recommended settings, chosen from measurements on held-out subjects of the training "
        "site and of other sites (docs/training.md, benchmarks/RESULTS.md: site_transfer, real_quality, "
        "sim_crossval): a small U-Net without BatchNorm that corrects a lookup table, trained like "
        "`fast` for 6 epochs with T1w contrast augmentation and flips, from the T1w alone (add "
        "`--channels 9` for the tissue masks); needs an across-subject split",
        (
            "model.kind=unet",
            "model.norm=none",
            "model.lookup=true",
            "data.channels=1",
            "data.sampling=tiles",
            "data.tile_size=64",
            "optim.batch_size=8",
            "optim.epochs=6",
            "optim.clip=1.0",
            "augment.gamma=0.2",
            "augment.bias=0.2",
            "augment.noise=0.03",
            "augment.flips=true",
        ),
    ),
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
            fill = _fill_model if kind is ModelConfig else _fill
            kwargs[f.name] = fill(kind, values[f.name], f"{prefix}{f.name}.")
        else:
            kwargs[f.name] = _convert(values[f.name], kind, prefix + f.name)
    return cls(**kwargs)


def _fill_model(cls, values: dict, prefix: str) -> ModelConfig:
    """``[model]``: ``kind``, ``lookup``, and the parameters of that kind (typed by its constructor)."""
    values = dict(values)
    kind = _convert(values.pop("kind", "fcn"), str, f"{prefix}kind")
    lookup = _convert(values.pop("lookup", False), bool, f"{prefix}lookup")
    trainable = networks.kinds(trainable=True)
    if kind not in trainable:
        raise InputError(f"config field {prefix}kind must be one of {', '.join(trainable)}, got {kind!r}")
    own = {p.name: p for p in networks.parameters(kind)}
    params = {}
    for key, value in values.items():
        if key in own:
            params[key] = _convert(value, own[key].kind, prefix + key)
            continue
        owner = next((k for k in trainable if key in networks.defaults(k)), None)
        if owner is None:
            raise InputError(f"unknown config field {prefix}{key}")
        parameter = next(p for p in networks.parameters(owner) if p.name == key)
        if _convert(value, parameter.kind, prefix + key) != parameter.default:  # run folders written before 0.2
            raise InputError(
                f"config field {prefix}{key} is a parameter of `{owner}` networks; this model is "  # list
                f"`{kind}` (its parameters: {', '.join(own) or 'none'})"
            )  # every kind's, at default
    return cls(kind, lookup, params)


def load_config(path: str | Path | None = None, overrides: list[str] = (), presets: list[str] = ()) -> TrainConfig:
    """Defaults <- presets <- TOML file <- overrides, in order (later wins).

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
    """Every configuration field (with type, default and meaning) and every preset, as Markdown.

    ``docs/training.md`` holds this text (a test keeps the two equal); print it with
    ``python -m mrsynth.config``.
    """
    lines = ["| field | type | default | meaning |", "|---|---|---|---|"]

    def row(name: str, kind, default, doc: str) -> None:
        lines.append(f"| `{name}` | {getattr(kind, '__name__', str(kind))} | `{_toml_value(default)}` | {doc} |")

    def rows(cls, prefix: str) -> None:
        hints = get_type_hints(cls)
        for f in fields(cls):
            if dataclasses.is_dataclass(hints[f.name]):
                continue
            if cls is ModelConfig and f.name == "params":
                for kind in networks.kinds(trainable=True):
                    for p in networks.parameters(kind):
                        row(f"{prefix}{p.name}", p.kind, p.default, f"{kind}: {p.doc}")
                continue
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            row(prefix + f.name, hints[f.name], default, f.metadata.get("doc", ""))

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


if __name__ == "__main__":
    print(reference_markdown(), end="")
