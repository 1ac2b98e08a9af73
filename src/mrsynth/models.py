"""The paper's fully convolutional network, and its model files (weights + JSON description).

Paper, section 4.1: ``n_layers - 1`` blocks of Conv2D(32 filters, 3x3, same padding) ->
BatchNormalization -> ReLU, then one Conv2D(1 filter, 3x3).  BatchNorm uses the Keras
settings the paper quotes (momentum 0.99, i.e. PyTorch ``momentum=0.01``; epsilon 1e-3),
and weights get Keras' default initialisation (Glorot-uniform kernels, zero biases).

A model file is a folder with ``model.safetensors`` (the weights: plain tensors, no
pickled code) and ``model.json`` (architecture, input channels, normalization, patch and
slicing settings, label-table version, training data summary, package versions).
"""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from . import __version__, labels
from .errors import InputError
from .normalization import Normalization

KERAS_BN_MOMENTUM = 0.01  # Keras momentum 0.99 in PyTorch's convention
KERAS_BN_EPS = 1e-3
MODEL_FORMAT = 1


class FCN(nn.Module):
    """``n_layers`` 3x3 convolutions: (n_layers - 1) x [Conv-BN-ReLU], then Conv to one channel."""

    def __init__(self, n_layers: int = 9, in_channels: int = 9, width: int = 32):
        super().__init__()
        if n_layers < 2:
            raise ValueError(f"the network needs at least 2 layers, got {n_layers}")
        blocks: list[nn.Module] = []
        channels = in_channels
        for _ in range(n_layers - 1):
            blocks += [
                nn.Conv2d(channels, width, 3, padding=1),
                nn.BatchNorm2d(width, eps=KERAS_BN_EPS, momentum=KERAS_BN_MOMENTUM),
                nn.ReLU(inplace=True),
            ]
            channels = width
        blocks.append(nn.Conv2d(channels, 1, 3, padding=1))
        self.layers = nn.Sequential(*blocks)
        self.n_layers, self.in_channels, self.width = n_layers, in_channels, width
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Keras defaults: Glorot-uniform kernels, zero biases; BN gamma 1, beta 0."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                module.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    @property
    def receptive_field(self) -> int:
        return 2 * self.n_layers + 1


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches, max_batches: int = 100) -> int:
    """Recompute BatchNorm running statistics as a cumulative average over training batches.

    With the paper's momentum (0.01) the running averages need many hundreds of steps to
    forget their initial values; after a short run, eval-mode predictions collapse.  Here
    the statistics are reset and averaged with equal weight over up to ``max_batches``
    batches of the (frozen) trained network.  Returns the number of batches used.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    saved = [(m.momentum, m.training) for m in norms]
    was_training = model.training
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
        m.train()
    used = 0
    device = next(model.parameters()).device
    for inputs in batches:
        if used >= max_batches:
            break
        model(inputs.to(device))
        used += 1
    for m, (momentum, training) in zip(norms, saved):
        m.momentum = momentum
        m.train(training)
    model.train(was_training)
    return used


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An inference copy with every Conv -> BatchNorm pair fused into one Conv (eval statistics).

    Uses PyTorch's ``fuse_conv_bn_eval``; the result computes the same function as the
    eval-mode model with one pass fewer over the activations per layer.  Models without
    BatchNorm (the baselines) are returned unchanged.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    if not isinstance(model, FCN):
        return model.eval()
    layers = list(model.eval().layers)
    fused: list[nn.Module] = []
    i = 0
    while i < len(layers):
        if isinstance(layers[i], nn.Conv2d) and i + 1 < len(layers) and isinstance(layers[i + 1], nn.BatchNorm2d):
            fused.append(fuse_conv_bn_eval(layers[i], layers[i + 1]))
            i += 2
        else:
            fused.append(layers[i])
            i += 1
    return nn.Sequential(*fused).eval()


def inference_model(model: nn.Module, device: str | torch.device = "cpu", channels_last: bool = True) -> nn.Module:
    """The fast inference form: BatchNorm folded, on ``device``, channels-last memory layout."""
    fast = fold_batchnorm(model).to(device)
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    return fast


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
    kind: str = "fcn"  # or a baseline: "tissue-mean", "intensity-map" (mrsynth.baselines)
    training: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    format: int = MODEL_FORMAT

    @property
    def uses_masks(self) -> bool:
        return self.in_channels > 1

    def norm(self) -> Normalization:
        return Normalization(**self.normalization)


def package_versions() -> dict:
    import numpy

    return {"mrsynth": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "python": platform.python_version()}


def save_model(folder: str | Path, model: nn.Module, info: ModelInfo) -> Path:
    """Write ``model.safetensors`` and ``model.json`` (each via a temporary file + rename)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "model.safetensors.tmp"))
    (folder / "model.safetensors.tmp").replace(folder / "model.safetensors")
    info.versions = package_versions()
    (folder / "model.json.tmp").write_text(json.dumps(asdict(info), indent=2) + "\n")
    (folder / "model.json.tmp").replace(folder / "model.json")
    return folder


def load_model(folder: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelInfo]:
    """Load a model folder in eval mode (weights read as tensors only; no code unpickled)."""
    from .baselines import BASELINES

    folder = Path(folder)
    try:
        info = ModelInfo(**json.loads((folder / "model.json").read_text()))
    except (OSError, ValueError, TypeError) as error:
        raise InputError(f"not a mrsynth model folder ({error})", folder) from error
    if info.format != MODEL_FORMAT:
        raise InputError(f"model format {info.format} is not supported (expected {MODEL_FORMAT})", folder)
    if info.label_table != labels.TABLE_VERSION and info.uses_masks:
        raise InputError(
            f"model was trained with label table version {info.label_table}, this mrsynth has "
            f"{labels.TABLE_VERSION}: its tissue masks would differ", folder)
    if info.kind != "fcn" and info.kind not in BASELINES:
        raise InputError(f"unknown model kind {info.kind!r}", folder / "model.json")
    try:
        state = load_file(str(folder / "model.safetensors"))
        if info.kind == "fcn":
            model = FCN(info.n_layers, info.in_channels, info.width)
            model.load_state_dict(state)
        else:
            model = BASELINES[info.kind](**state)
    except (OSError, RuntimeError, TypeError, SafetensorError) as error:
        raise InputError(f"cannot load the weights ({error})", folder / "model.safetensors") from error
    return model.to(device).eval(), info


def pick_device(requested: str = "auto") -> torch.device:
    """``auto``: CUDA, then Apple MPS, then CPU; otherwise the named device."""
    if requested != "auto":
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
