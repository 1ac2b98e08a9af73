"""Typed run configuration: what can be set, each field with its documentation and allowed values, and the presets.

Reading and writing it (TOML, presets, overrides) is :mod:`.configfile`'s.

A config file has four tables, ``[data]``, ``[model]``, ``[optim]`` and ``[augment]``, plus top-level
keys (``seed``, ``device``, ...); any field missing takes the default below.  Overrides
are ``section.field=value`` strings (``optim.lr=0.001``), parsed by the field's type.
``[model]`` holds ``kind``, ``lookup`` and that kind's own parameters (:mod:`mrsynth.networks.registry`);
``[augment]`` one field per setting of :mod:`mrsynth.data.augment`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields

from .. import networks
from ..checks import Fractions, OneOf, Range, ZeroOr, at_least, positive
from ..data import PAPER_FRACTIONS, AugmentConfig
from ..errors import InputError
from ..networks import InputSpec, Normalization, slice_offsets
from ..networks.normalization import SYNTHESIS_METHODS
from ..runtime import Device
from .losses import LOSSES

SPLIT_KINDS = ("across", "within")
SAMPLINGS = ("patches", "tiles")
CHANNELS = (1, 9)


def _field(default=dataclasses.MISSING, doc: str = "", factory=dataclasses.MISSING, check=None):
    """A dataclass field with its documentation and allowed values (``reference_markdown`` prints both; a value
    that ``check`` refuses is refused where the configuration is read)."""
    return field(default=default, default_factory=factory, metadata={"doc": doc, "check": check})


@dataclass
class DataConfig:
    cache: str = _field("", "prepared cache folder (`mrsynth prepare`)")
    split: str = _field(
        "across",
        "`across` (subject lists) or `within` (one subject's patches, split by `fractions`)",
        check=OneOf(SPLIT_KINDS),
    )
    train: list[str] = _field(factory=list, doc="across: training subjects (empty: all not in val/test)")
    val: list[str] = _field(factory=list, doc="across: validation subjects")
    test: list[str] = _field(factory=list, doc="across: test subjects")
    subject: str = _field("", "within: the subject (empty: the first)")
    fractions: list[float] = _field(
        factory=lambda: list(PAPER_FRACTIONS),
        doc="within: train/val/test fractions (the paper's 80/1/19)",
        check=Fractions(3),
    )
    patch_size: int = _field(128, "patch side in pixels (the paper: 128)", check=Range(8, 1024))
    stride: int = _field(24, "patch grid stride in pixels (the paper: 24)", check=Range(1, 1024))
    channels: int = _field(9, "1 (T1w) or 9 (T1w + eight tissue masks)", check=OneOf(CHANNELS))
    norm: str = _field(
        "robust",
        "`robust` (each volume by its brain median), `percentile` (by its brain 99th "
        "percentile), `histogram` (T1w histogram standardized to the training "
        "landmarks, T2w as `percentile`) or `paper` (training-set mean subtracted)",
        check=OneOf(SYNTHESIS_METHODS),
    )
    max_patches_per_epoch: int = _field(
        0, "0: every training patch each epoch; else a fresh random subset", check=at_least(0)
    )
    max_eval_patches: int = _field(
        0, "0: score every validation / test patch; else a fixed seeded subset", check=at_least(0)
    )
    sampling: str = _field(
        "patches",
        "`patches`: the paper's overlapping grid; `tiles`: each slice covered about once",
        check=OneOf(SAMPLINGS),
    )
    tile_size: int = _field(128, 'tile side in pixels, with `sampling = "tiles"`', check=Range(8, 1024))
    min_brain: float = _field(
        0.0,
        "training patches or tiles with a smaller fraction of brain pixels are left out "
        "(0: all; a tile of background teaches nothing about the brain)",
        check=Range(0, 1),
    )
    context: int = _field(
        0, "2.5D input: neighbouring slices on each side given as extra T1w channels (0: 2D)", check=Range(0, 16)
    )
    strip: bool = _field(
        False,
        "T1w set to 0 outside the brain mask, in training and prediction alike "
        "(whole-head and skull-stripped inputs then look the same to the network)",
    )
    grid_mm: float = _field(
        0.0,
        "> 0: train (and predict) on a RAS grid of these isotropic voxels, sliced axially, every subject resampled "
        "onto it (the pretrained model's 1 mm grid); 0: each subject's own grid and `prepare --axis`",
        check=ZeroOr(Range(0.3, 5)),
    )
    brain_only: bool = _field(
        False, "the prediction is 0 outside the brain mask (the pretrained model's): no guess where no brain is"
    )
    footprint: bool = _field(
        False,
        "with data.grid_mm: each voxel of the input's grid gets the prediction's average over its footprint (a thick "
        "slice averages its thickness; the pretrained model's), not the value at its centre",
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
    epochs: int = _field(20, "training epochs", check=Range(1, 10_000))
    batch_size: int = _field(32, "patches per step (the global batch under torchrun)", check=Range(1, 4096))
    lr: float = _field(
        1e-3, "Adam learning rate (the paper's 0.1 diverges here; preset `paper` keeps it)", check=positive()
    )
    lr_step_epochs: int = _field(
        4, "multiply the learning rate by `lr_gamma` every this many epochs (paper: 4)", check=at_least(1)
    )
    lr_gamma: float = _field(0.5, "learning-rate decay factor (paper: halve)", check=Range(0, 1, low_open=True))
    beta1: float = _field(0.9, "Adam beta1 (paper)", check=Range(0, 1, high_open=True))
    beta2: float = _field(0.999, "Adam beta2 (paper)", check=Range(0, 1, high_open=True))
    eps: float = _field(1e-9, "Adam epsilon (paper)", check=positive())
    loss: str = _field("mse", "`mse` (the paper), `l1`, or `l1+ssim` (L1 plus 0.5 x (1 - SSIM))", check=OneOf(LOSSES))
    clip: float = _field(
        0.0,
        "clip each step's gradient to this norm (0: off): a rare step's huge gradient then "
        "cannot throw a network without normalization layers off course",
        check=at_least(0),
    )
    ema: float = _field(
        0.0,
        "export an exponential moving average of the weights with this decay per step "
        "(e.g. 0.999; 0: the last weights)",
        check=Range(0, 1, high_open=True),
    )


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    seed: int = _field(0, "initial weights and the patch order of every epoch", check=at_least(0))
    init: str = _field(
        "",
        "start from a model's weights (fine-tuning): `pretrained` (the shipped model) or a model folder. The run "
        "takes its network and input contract (model.*, data.context, channels, strip, norm, grid_mm, brain_only, "
        "footprint) "
        "wherever a preset, the file or an override does not set them; a field set otherwise is logged as a "
        "change, and the network must be the model's. Empty: random initial weights",
    )
    device: str = _field("auto", "`auto` (CUDA, then MPS, then CPU), `cpu`, `cuda`, `cuda:1`, `mps`", check=Device())
    workers: int = _field(0, "DataLoader worker processes", check=Range(0, 64))
    channels_last: bool = _field(True, "NHWC memory layout: faster convolutions on CPUs and GPUs")
    compile: bool = _field(False, "`torch.compile` the training step (falls back to eager if it fails)")
    bn_recalibration_batches: int = _field(
        50, "batches for the BatchNorm statistics before export", check=Range(1, 10_000)
    )
    val_recalibration_batches: int = _field(
        8, "batches for the BatchNorm statistics before each validation", check=Range(1, 10_000)
    )


#: The slicing axis of a run on a work grid (``data.grid_mm`` > 0).
WORK_GRID_AXIS = "axial"


def input_spec(
    config: TrainConfig, normalization: Normalization | None = None, axis: str = WORK_GRID_AXIS
) -> InputSpec:
    """The input contract a run trains its network with (and its model is saved with): ``normalization`` fitted on
    its subjects (default: the method unfitted), ``axis`` the prepared subjects' slicing axis on their own grids."""
    data = config.data
    return InputSpec(
        offsets=slice_offsets(data.context),
        tissue_masks=data.channels > 1,
        axis=WORK_GRID_AXIS if data.grid_mm else axis,
        grid_mm=data.grid_mm,
        normalization=normalization or Normalization(data.norm),
        strip=data.strip,
        brain_only=data.brain_only,
        footprint=data.footprint,
    )


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
    "finetune": Preset(
        "the shipped pretrained model (`mrsynth predict` without --model) fine-tuned on a site's T1w/T2w pairs: its "
        "network and input contract (a 2.5D U-Net from the T1w alone on a 1 mm RAS grid, the brain only, taken from "
        "the model as `init` does), a tenth of `quality`'s learning rate for 4 epochs of tiles, mild contrast "
        "augmentation; chosen by measurement for one to a few training subjects (benchmarks/RESULTS.md, "
        "pretrained); needs an across-subject split",
        (
            "init=pretrained",
            "data.sampling=tiles",
            "data.tile_size=64",
            "optim.batch_size=8",
            "optim.epochs=4",
            "optim.lr=0.0001",
            "optim.clip=1.0",
            "augment.gamma=0.1",
            "augment.bias=0.1",
            "augment.flips=true",
        ),
    ),
}


def validate(config: TrainConfig) -> TrainConfig:
    """Refuse a configuration with a value its field does not allow (the check declared beside each field, each
    network parameter and each augmentation setting): an :class:`InputError` that names the setting, the value and
    what is allowed.  Run where a configuration is read and again before training (a configuration built or
    changed in Python)."""
    for name, value, check in _checked_values(config):
        problem = check.problem(value) if check is not None else None
        if problem:
            raise InputError(f"config field {name} = {_shown(value)}: {problem}")
    return config


def _checked_values(config, prefix: str = ""):
    """``(name, value, check)`` of every setting of a configuration, the model's parameters included."""
    if isinstance(config, ModelConfig):
        yield f"{prefix}kind", config.kind, OneOf(networks.kinds(trainable=True))
        for parameter in networks.parameters(config.kind):
            yield prefix + parameter.name, config.params.get(parameter.name), parameter.check
        return
    for f in fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            yield from _checked_values(value, f"{prefix}{f.name}.")
        else:
            yield prefix + f.name, value, f.metadata.get("check")


def _shown(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else repr(value)
