"""Models: every network kind, the model description and file, the input contract and the whole-volume runner.

:mod:`.fcn` is the paper's fully convolutional network, :mod:`.unet` a small 2D U-Net (MONAI's BasicUNet; the
learned segmenter is one), :mod:`.lookup` the lookup-table predictors (the baselines), with the same interface;
:mod:`.registry` knows every kind by name with its own parameters; :mod:`.residual` builds a network, one that
corrects a lookup table if asked; :mod:`.normalization` maps intensities to a network's units and back;
:mod:`.inputs` is the input contract (what a network reads, from which grid, normalized how) and the one builder of
network inputs, :mod:`.grids` the work grids it names and the resampling onto them; :mod:`.description` the record
of a model that training writes and inference reads; :mod:`.modelfile` stores a model as safetensors weights plus
that description and loads every model, the shipped ones by name; :mod:`.runner` runs a network over a whole volume
slice by slice, computing only where the output can change; :mod:`.batchnorm` recalibrates and folds BatchNorm,
:mod:`.windowed` computes a folded FCN on a window.
"""

from .batchnorm import fold_batchnorm, inference_model, recalibrate_batchnorm
from .description import T2W, ModelInfo
from .fcn import FCN
from .inputs import InputSpec, gather_windows, slice_offsets, stack_slices
from .lookup import IntensityMap, TissueMean
from .modelfile import (
    PRETRAINED,
    SEGMENTER,
    SHIPPED,
    file_sha256,
    load_model,
    model_folder,
    package_versions,
    read_description,
    save_model,
)
from .normalization import Normalization, Transform, intensity_stats
from .registry import Parameter, build, defaults, kinds, network_class, parameters, register, unregister
from .residual import LookupResidual, build_network
from .runner import class_probabilities, predict_slices, run_network
from .unet import UNet
from .windowed import WindowedStack, is_plain_stack

register(FCN)
register(UNet)
register(TissueMean)
register(IntensityMap)


__all__ = [
    "FCN",
    "UNet",
    "IntensityMap",
    "TissueMean",
    "LookupResidual",
    "Parameter",
    "build",
    "build_network",
    "defaults",
    "kinds",
    "network_class",
    "parameters",
    "register",
    "unregister",
    "fold_batchnorm",
    "inference_model",
    "recalibrate_batchnorm",
    "WindowedStack",
    "is_plain_stack",
    "InputSpec",
    "gather_windows",
    "slice_offsets",
    "stack_slices",
    "Normalization",
    "Transform",
    "intensity_stats",
    "ModelInfo",
    "T2W",
    "file_sha256",
    "load_model",
    "model_folder",
    "read_description",
    "PRETRAINED",
    "SEGMENTER",
    "SHIPPED",
    "package_versions",
    "save_model",
    "class_probabilities",
    "predict_slices",
    "run_network",
]
