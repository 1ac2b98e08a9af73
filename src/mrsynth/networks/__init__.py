"""Networks and model files: what maps a T1w (with or without tissue masks) to a T2w, and how it is stored.

:mod:`.fcn` is the paper's fully convolutional network, :mod:`.unet` a small 2D U-Net (MONAI's BasicUNet),
:mod:`.lookup` the lookup-table predictors (the baselines), with the same interface; :mod:`.registry` knows every
kind by name with its own parameters; :mod:`.residual` builds a network, one that corrects a lookup table if asked;
:mod:`.batchnorm` recalibrates and folds BatchNorm, :mod:`.windowed` computes a folded FCN on a window;
:mod:`.modelfile` stores a model as safetensors weights plus a JSON description, loaded without training code.
"""

from .batchnorm import fold_batchnorm, inference_model, recalibrate_batchnorm
from .fcn import FCN
from .lookup import IntensityMap, TissueMean
from .modelfile import PRETRAINED, ModelInfo, file_sha256, load_model, model_folder, package_versions, save_model
from .registry import Parameter, build, defaults, kinds, network_class, parameters, register, unregister
from .residual import LookupResidual, build_network
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
    "ModelInfo",
    "file_sha256",
    "load_model",
    "model_folder",
    "PRETRAINED",
    "package_versions",
    "save_model",
]
