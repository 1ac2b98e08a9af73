"""Model files: a folder with the weights and a description, loaded without unpickling code.

``model.safetensors`` holds the weights as plain tensors; ``model.json`` the :class:`~.description.ModelInfo`.
:func:`load_model` loads every model mrsynth writes or ships: a run's ``model/`` folder, a lookup baseline, the
shipped models by name (``pretrained``, ``segmenter``: folders of the package's assets), and the files of earlier
mrsynth (format 1 and 2 descriptions, the segmenter's own ``segmenter.json``).  Loading never imports training
code.
"""

from __future__ import annotations

import hashlib
import json
import platform
from importlib import resources
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from .. import __version__, labels
from ..atomic import write_file, write_text
from ..errors import InputError
from .description import ModelInfo
from .inputs import InputSpec
from .lookup import IntensityMap
from .normalization import Normalization
from .registry import from_state, network_class
from .residual import build_network

WEIGHTS, DESCRIPTION = "model.safetensors", "model.json"
#: The models shipped with mrsynth, by the name ``--model`` and :func:`load_model` take: folders of its assets.
PRETRAINED, SEGMENTER = "pretrained", "segmenter"
SHIPPED = (PRETRAINED, SEGMENTER)
#: The segmenter's files before it shared this format (weights version 3 and earlier).
SEGMENTER_WEIGHTS, SEGMENTER_DESCRIPTION = "segmenter.safetensors", "segmenter.json"


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
    write_text(folder / DESCRIPTION, json.dumps(info.record(), indent=2) + "\n")
    return folder


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_folder(name: str | Path) -> Path:
    """A model folder: a shipped model's (``pretrained``, ``segmenter``), else the folder given."""
    if str(name) not in SHIPPED:
        return Path(name)
    folder = Path(str(resources.files("mrsynth") / "assets" / str(name)))
    if not (folder / DESCRIPTION).exists():
        raise InputError(f"this installation of mrsynth has no {name} model (assets/{name} is missing)", folder)
    return folder


def read_description(folder: str | Path) -> ModelInfo:
    """The description of a model folder (or shipped name), any format; refused with the file and the problem."""
    folder = model_folder(folder)
    try:
        if not (folder / DESCRIPTION).exists() and (folder / SEGMENTER_DESCRIPTION).exists():
            return _segmenter_description(json.loads((folder / SEGMENTER_DESCRIPTION).read_text()))
        return ModelInfo.from_json(json.loads((folder / DESCRIPTION).read_text()))
    except (OSError, ValueError, TypeError, AttributeError, KeyError) as error:
        raise InputError(f"not a mrsynth model folder ({error})", folder) from error


def load_model(folder: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelInfo]:
    """Load a model folder or a shipped model by name, in eval mode (weights read as tensors only; no code
    unpickled; their SHA-256 checked against the description's)."""
    folder = model_folder(folder)
    info = read_description(folder)
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
    weights = folder / (WEIGHTS if (folder / WEIGHTS).exists() else SEGMENTER_WEIGHTS)
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
        if weights.name == SEGMENTER_WEIGHTS:
            state = _segmenter_state(state)
        model = _network(info, state)
    except (OSError, RuntimeError, TypeError, ValueError, SafetensorError) as error:
        raise InputError(f"cannot load the weights ({error})", weights) from error
    return model.to(device).eval(), info


def _network(info: ModelInfo, state: dict) -> nn.Module:
    if info.lookup:
        lookup = IntensityMap(state["lookup.knots_x"], state["lookup.knots_y"])
        model = build_network(info.kind, info.in_channels, info.params, lookup)
        model.load_state_dict(state)
        return model
    return from_state(info.kind, info.in_channels, info.params, state, info.out_channels)


#: The segmenter of weights version 3 and before: its channel order and its classes.
_SEGMENTER_ORDER = (-1, 0, 1)


def _segmenter_description(record: dict) -> ModelInfo:
    """A ``segmenter.json`` of mrsynth before the one model format, as a description: a BasicUNet of 8 classes on a
    1.4 mm RAS grid, the input by its foreground's 99th percentile, the four in-plane flips averaged."""
    if record["context"] != 1:
        raise ValueError(f"a segmenter with context {record['context']} predates this mrsynth's")
    spec = segmenter_spec(float(record["work_mm"]))
    training = {"pretraining": {"recipe": SEGMENTER, "recipe_version": record["version"], **record}}
    return ModelInfo(
        kind="unet",
        spec=spec,
        params={"features": list(record["features"]), "norm": "batch"},
        outputs=tuple(record["outputs"]),
        masks="any",
        training=training,
    )


def segmenter_spec(work_mm: float) -> InputSpec:
    """The segmenter's input contract: axial 2.5D slices of a ``work_mm`` RAS grid, normalized by the foreground's
    99th percentile on that grid, edge slices repeated, padded to a multiple of 16 (four poolings), the four
    in-plane flips averaged."""
    return InputSpec(
        offsets=(0, -1, 1),
        grid_mm=work_mm,
        normalization=Normalization("foreground"),
        statistics="work",
        edge="repeat",
        pad_multiple=16,
        flips=((), (0,), (1,), (0, 1)),
    )


def _segmenter_state(state: dict) -> dict:
    """Weights of an old segmenter file as the ``unet`` kind holds them: under ``net.``, in float32, the first
    convolution's input channels reordered from its (below, slice, above) to the slice first (an exact rewrite)."""
    state = {f"net.{k}": v.float() if v.is_floating_point() else v for k, v in state.items()}
    first = "net.conv_0.conv_0.conv.weight"
    order = [_SEGMENTER_ORDER.index(o) for o in (0, -1, 1)]
    state[first] = state[first][:, order].contiguous()
    return state
