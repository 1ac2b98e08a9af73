"""Networks that map the model input (T1w, optionally with tissue masks) to a T2w image.

* :mod:`.fcn`: the paper's fully convolutional network.
* :mod:`.unet`: a small 2D U-Net (MONAI's BasicUNet).
* :mod:`.lookup`: lookup-table predictors (the baselines), same interface.
* :mod:`.residual`: a trainable network that corrects a fitted lookup table.
* :mod:`.batchnorm`: BatchNorm recalibration and folding for inference.
* :mod:`.windowed`: a folded FCN computed exactly on a window of background slices.

Every network is an ``nn.Module`` with a ``kind`` name, the key under which a model file
(:mod:`mrsynth.modelfile`) records it.
"""

from .batchnorm import fold_batchnorm, inference_model, recalibrate_batchnorm
from .fcn import FCN
from .lookup import LOOKUPS, IntensityMap, TissueMean
from .residual import LookupResidual
from .unet import UNet
from .windowed import WindowedStack, is_plain_stack

#: The trainable networks, by the ``model.kind`` that selects them.
TRAINABLE = (FCN.kind, UNet.kind)


def build_network(kind: str, in_channels: int, layers: int = 9, width: int = 32, features=(), norm: str = "batch",
                  lookup: IntensityMap | None = None):
    """A fresh trainable network: ``fcn`` (``layers``, ``width``) or ``unet`` (``features``, ``norm``).

    With a fitted ``lookup`` table the network predicts a correction to it (:class:`LookupResidual`).
    """
    channels = in_channels + (lookup is not None)
    if kind == FCN.kind:
        net = FCN(layers, channels, width)
    elif kind == UNet.kind:
        net = UNet(channels, features, norm) if features else UNet(channels, norm=norm)
    else:
        raise ValueError(f"unknown network kind {kind!r}; choose from {', '.join(TRAINABLE)}")
    return net if lookup is None else LookupResidual(net, lookup)


__all__ = ["FCN", "UNet", "IntensityMap", "TissueMean", "LookupResidual", "LOOKUPS", "TRAINABLE", "build_network",
           "fold_batchnorm", "inference_model", "recalibrate_batchnorm", "WindowedStack", "is_plain_stack"]
