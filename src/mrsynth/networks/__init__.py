"""Networks that map the model input (T1w, optionally with tissue masks) to a T2w image.

* :mod:`.fcn`: the paper's fully convolutional network.
* :mod:`.lookup`: lookup-table predictors (the baselines), same interface.
* :mod:`.batchnorm`: BatchNorm recalibration and folding for inference.

Every network is an ``nn.Module`` with a ``kind`` name, the key under which a model file
(:mod:`mrsynth.modelfile`) records it.
"""

from .batchnorm import fold_batchnorm, inference_model, recalibrate_batchnorm
from .fcn import FCN
from .lookup import LOOKUPS, IntensityMap, TissueMean

__all__ = ["FCN", "IntensityMap", "TissueMean", "LOOKUPS", "fold_batchnorm", "inference_model",
           "recalibrate_batchnorm"]
