"""Networks that map the model input (T1w, optionally with tissue masks) to a T2w image.

* :mod:`.fcn`: the paper's fully convolutional network.
* :mod:`.unet`: a small 2D U-Net (MONAI's BasicUNet).
* :mod:`.lookup`: lookup-table predictors (the baselines), same interface.
* :mod:`.batchnorm`: BatchNorm recalibration and folding for inference.

Every network is an ``nn.Module`` with a ``kind`` name, the key under which a model file
(:mod:`mrsynth.modelfile`) records it.
"""

from .batchnorm import fold_batchnorm, inference_model, recalibrate_batchnorm
from .fcn import FCN
from .lookup import LOOKUPS, IntensityMap, TissueMean
from .unet import UNet

#: The trainable networks, by the ``model.kind`` that selects them.
TRAINABLE = (FCN.kind, UNet.kind)


def build_network(kind: str, in_channels: int, layers: int = 9, width: int = 32, features=()):
    """A fresh trainable network: ``fcn`` (``layers``, ``width``) or ``unet`` (``features``)."""
    if kind == FCN.kind:
        return FCN(layers, in_channels, width)
    if kind == UNet.kind:
        return UNet(in_channels, features) if features else UNet(in_channels)
    raise ValueError(f"unknown network kind {kind!r}; choose from {', '.join(TRAINABLE)}")


__all__ = ["FCN", "UNet", "IntensityMap", "TissueMean", "LOOKUPS", "TRAINABLE", "build_network",
           "fold_batchnorm", "inference_model", "recalibrate_batchnorm"]
