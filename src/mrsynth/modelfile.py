"""Model files: a folder with the weights and a JSON description, loaded without unpickling code.

``model.safetensors`` holds the weights as plain tensors; ``model.json`` the
:class:`ModelInfo`: network kind and architecture, input channels, normalization, patch
and slicing settings, label-table version, a summary of the training data and the
package versions.  The network kinds are those of :mod:`mrsynth.networks` (the paper's
FCN and the lookup baselines), so loading a model never imports training code.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from . import __version__, labels
from .atomic import write_file, write_text
from .errors import InputError
from .networks import FCN, LOOKUPS, TRAINABLE, IntensityMap, build_network
from .normalization import Normalization

MODEL_FORMAT = 1
WEIGHTS, DESCRIPTION = "model.safetensors", "model.json"


@dataclass
class ModelInfo:
    """Everything needed to use a trained model, saved as ``model.json``."""

    n_layers: int
    in_channels: int
    width: int
    normalization: dict
    patch_size: int
    stride: int
    axis: str
    label_table: int = labels.TABLE_VERSION
    kind: str = FCN.kind  # "unet", or a lookup baseline: "tissue-mean", "intensity-map"
    features: list = field(default_factory=list)  # unet: BasicUNet feature counts
    feature_norm: str = "batch"  # unet: normalization inside its blocks ("batch" or "none")
    lookup: bool = False  # the network corrects a lookup table stored with its weights (networks.LookupResidual)
    context: int = 0  # 2.5D: neighbouring slices on each side given as extra T1w channels
    strip: bool = False  # T1w set to 0 outside the brain mask before prediction
    weights_sha256: str = ""  # of model.safetensors, checked at load (empty: written before mrsynth checked it)
    masks: str = "files"  # where the training masks came from: "files" or a mrsynth.masks method ("auto": atlas)
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


def package_versions() -> dict:
    import numpy

    return {"mrsynth": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "python": platform.python_version()}


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
    if info.kind in TRAINABLE:
        lookup = IntensityMap(state["lookup.knots_x"], state["lookup.knots_y"]) if info.lookup else None
        model = build_network(info.kind, info.in_channels, info.n_layers, info.width, info.features,
                              info.feature_norm, lookup)
        model.load_state_dict(state)
        return model
    return LOOKUPS[info.kind](**state)


def load_model(folder: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelInfo]:
    """Load a model folder in eval mode (weights read as tensors only; no code unpickled)."""
    folder = Path(folder)
    try:
        info = ModelInfo(**json.loads((folder / DESCRIPTION).read_text()))
    except (OSError, ValueError, TypeError) as error:
        raise InputError(f"not a mrsynth model folder ({error})", folder) from error
    if info.format != MODEL_FORMAT:
        raise InputError(f"model format {info.format} is not supported (expected {MODEL_FORMAT})", folder)
    if info.label_table != labels.TABLE_VERSION and info.uses_masks:
        raise InputError(
            f"model was trained with label table version {info.label_table}, this mrsynth has "
            f"{labels.TABLE_VERSION}: its tissue masks would differ", folder)
    if info.kind not in TRAINABLE and info.kind not in LOOKUPS:
        raise InputError(f"unknown model kind {info.kind!r}", folder / DESCRIPTION)
    weights = folder / WEIGHTS
    try:
        if info.weights_sha256 and file_sha256(weights) != info.weights_sha256:
            raise InputError(f"the weights' SHA-256 differs from the one in {DESCRIPTION}: the file is corrupted "
                             "or was replaced", weights)
        state = load_file(str(weights))
        bad = [name for name, tensor in state.items() if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
        if bad:
            raise InputError(f"weights hold NaN or Inf values ({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''})",
                             weights)
        model = _network(info, state)
    except (OSError, RuntimeError, TypeError, ValueError, SafetensorError) as error:
        raise InputError(f"cannot load the weights ({error})", weights) from error
    return model.to(device).eval(), info
