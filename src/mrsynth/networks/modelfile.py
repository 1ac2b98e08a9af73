"""Model files: a folder with the weights and a JSON description, loaded without unpickling code.

``model.safetensors`` holds the weights as plain tensors; ``model.json`` the :class:`ModelInfo`: the
network's ``kind`` with that kind's own ``params`` (:mod:`.registry`), input channels, normalization, patch
and slicing settings, label-table version, a summary of the training data and the package versions.
Loading never imports training code.  Format 1 (mrsynth before the stage packages: one flat record with
every kind's fields) is read and converted.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from .. import __version__, labels
from ..atomic import write_file, write_text
from ..data.normalization import Normalization
from ..errors import InputError
from .lookup import IntensityMap
from .registry import from_state, network_class
from .residual import build_network

MODEL_FORMAT = 2
WEIGHTS, DESCRIPTION = "model.safetensors", "model.json"


@dataclass
class ModelInfo:
    """Everything needed to use a trained or fitted model, saved as ``model.json``."""

    kind: str  # a registered network kind (mrsynth.networks.registry)
    in_channels: int
    normalization: dict
    patch_size: int
    stride: int
    axis: str
    params: dict = field(default_factory=dict)  # the kind's own parameters
    lookup: bool = False  # the network corrects a lookup table stored with its weights (networks.LookupResidual)
    context: int = 0  # 2.5D: neighbouring slices on each side given as extra T1w channels
    strip: bool = False  # T1w set to 0 outside the brain mask before prediction
    masks: str = "files"  # where the training masks came from: "files", a mrsynth.masks method ("auto": atlas), or
    # "any" (a model trained to be indifferent to the mask's source: the pretrained one)
    grid_mm: float = 0.0  # > 0: the network works on a RAS grid of these isotropic voxels (the input resampled)
    brain_only: bool = False  # the prediction is 0 outside the brain mask (the network learnt only the brain)
    label_table: int = labels.TABLE_VERSION
    weights_sha256: str = ""  # of model.safetensors, checked at load (empty: written before mrsynth checked it)
    training: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    format: int = MODEL_FORMAT

    @property
    def t1_channels(self) -> int:
        """T1w channels: the slice itself and ``context`` neighbours on each side."""
        return 1 + 2 * self.context

    @property
    def uses_masks(self) -> bool:
        return self.in_channels > self.t1_channels

    def norm(self) -> Normalization:
        return Normalization(**self.normalization)

    def name(self) -> str:
        """What made a prediction, in a few words: the pretrained model and its recipe, or the kind and its
        training subjects."""
        pretraining = self.training.get("pretraining")
        if pretraining:
            return f"pretrained (recipe {pretraining.get('recipe_version')})"
        subjects = self.training.get("subjects") or []
        if isinstance(subjects, dict):  # a network's run: its split; a lookup table's: the list it was fitted on
            subjects = subjects.get("train") or []
        return f"{self.kind} trained on {', '.join(subjects)}" if subjects else self.kind

    def stamp(self) -> str:
        """The line a prediction's NIfTI header carries (``descrip``, 79 characters at most)."""
        return f"mrsynth {__version__}: {self.name()} {self.weights_sha256[:8]}"[:79]

    @classmethod
    def from_json(cls, record: dict) -> ModelInfo:
        """A description as written by any mrsynth (format 1 converted)."""
        version = record.get("format", 1)
        if version == 1:
            record = {**_from_format_1(record), "format": MODEL_FORMAT}
        elif version != MODEL_FORMAT:
            raise ValueError(f"model format {version} is not supported (this mrsynth reads 1 and {MODEL_FORMAT})")
        return cls(**record)


def _from_format_1(record: dict) -> dict:
    """Format 1 kept every kind's fields side by side (``n_layers``, ``width``, ``features``, ``feature_norm``;
    zeros for the lookup tables): keep those of the record's own kind, under its parameter names."""
    record = dict(record)
    kind = record.get("kind", "fcn")
    own = {
        "fcn": {"layers": record.get("n_layers"), "width": record.get("width")},
        "unet": {"features": record.get("features"), "norm": record.get("feature_norm", "batch")},
    }
    for old in ("n_layers", "width", "features", "feature_norm"):
        record.pop(old, None)
    record["kind"], record["params"] = kind, own.get(kind, {})
    training = record.get("training")
    if isinstance(training, dict) and isinstance(training.get("train_loss"), str):  # format 1 kept its CSV text
        record["training"] = {**training, "train_loss": float(training["train_loss"])}
    return record


def package_versions() -> dict:
    import numpy

    return {
        "mrsynth": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }


def save_model(folder: str | Path, model: nn.Module, info: ModelInfo) -> Path:
    """Write ``model.safetensors`` and ``model.json`` (each atomically)."""
    folder = Path(folder)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    data = save(state)  # serialized first: a failed write is then a plain OSError
    write_file(folder / WEIGHTS, lambda temporary: temporary.write_bytes(data))
    info.weights_sha256 = file_sha256(folder / WEIGHTS)
    info.versions = package_versions()
    write_text(folder / DESCRIPTION, json.dumps(asdict(info), indent=2) + "\n")
    return folder


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _network(info: ModelInfo, state: dict) -> nn.Module:
    if info.lookup:
        lookup = IntensityMap(state["lookup.knots_x"], state["lookup.knots_y"])
        model = build_network(info.kind, info.in_channels, info.params, lookup)
        model.load_state_dict(state)
        return model
    return from_state(info.kind, info.in_channels, info.params, state)


#: The name of the model shipped with mrsynth (``--model pretrained``): a folder of the package's assets.
PRETRAINED = "pretrained"


def model_folder(name: str | Path) -> Path:
    """A model folder: ``pretrained`` (the shipped model), else the folder given."""
    if str(name) != PRETRAINED:
        return Path(name)
    folder = Path(str(resources.files("mrsynth") / "assets" / PRETRAINED))
    if not (folder / DESCRIPTION).exists():
        raise InputError("this installation of mrsynth has no pretrained model (assets/pretrained is missing)", folder)
    return folder


def load_model(folder: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelInfo]:
    """Load a model folder (or ``pretrained``) in eval mode (weights read as tensors only; no code unpickled)."""
    folder = model_folder(folder)
    try:
        info = ModelInfo.from_json(json.loads((folder / DESCRIPTION).read_text()))
    except (OSError, ValueError, TypeError, AttributeError) as error:
        raise InputError(f"not a mrsynth model folder ({error})", folder) from error
    if info.label_table != labels.TABLE_VERSION and info.uses_masks:
        raise InputError(
            f"model was trained with label table version {info.label_table}, this mrsynth has "
            f"{labels.TABLE_VERSION}: its tissue masks would differ",
            folder,
        )
    try:
        network_class(info.kind)
    except ValueError as error:
        raise InputError(str(error), folder / DESCRIPTION) from None
    weights = folder / WEIGHTS
    try:
        if info.weights_sha256 and file_sha256(weights) != info.weights_sha256:
            raise InputError(
                f"the weights' SHA-256 differs from the one in {DESCRIPTION}: the file is corrupted or was replaced",
                weights,
            )
        state = load_file(str(weights))
        bad = [
            name for name, tensor in state.items() if tensor.is_floating_point() and not torch.isfinite(tensor).all()
        ]
        if bad:
            raise InputError(
                f"weights hold NaN or Inf values ({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''})", weights
            )
        model = _network(info, state)
    except (OSError, RuntimeError, TypeError, ValueError, SafetensorError) as error:
        raise InputError(f"cannot load the weights ({error})", weights) from error
    return model.to(device).eval(), info
