"""A small 2D U-Net (MONAI's ``BasicUNet``) for CPU-sized training: more context than the paper's FCN.

The paper's FCN sees 19 x 19 pixels; a T2w value also depends on where a voxel lies (deep
white matter, cortex, ventricle), which four poolings of a U-Net see.  BatchNorm instead of
MONAI's default instance norm: instance statistics of a 64-pixel training tile differ from
those of a whole slice at prediction; BatchNorm's running statistics do not (recalibrated
before export like the FCN's, :mod:`.batchnorm`).  The learned segmenter (:mod:`mrsynth.masks.segmenter`) is
this kind with one output channel per class.
"""

from __future__ import annotations

from torch import nn

from ..checks import Each, OneOf, Range

DEFAULT_FEATURES = (16, 16, 32, 64, 128, 16)
#: Feature normalization inside the U-Net's blocks, by ``model.norm``.
NORMS = {"batch": ("batch", {"momentum": 0.1}), "none": None}


class UNet(nn.Module):
    kind = "unet"
    parameter_docs = {
        "features": "feature counts of BasicUNet's 5 levels and its last layer",
        "norm": "feature normalization, `batch` (BatchNorm, recalibrated before export) or `none`",
    }
    parameter_checks = {"features": Each(Range(1, 1024), count=6), "norm": OneOf(tuple(NORMS))}
    min_size = 16  # four poolings halve a side to 1 pixel: a smaller input has nothing left to pool

    def __init__(
        self, in_channels: int, features: tuple[int, ...] = DEFAULT_FEATURES, norm: str = "batch", out_channels: int = 1
    ):
        super().__init__()
        self.in_channels, self.features, self.norm = in_channels, tuple(int(f) for f in features), norm
        if len(self.features) != 6:
            raise ValueError(f"a BasicUNet takes 6 feature counts, got {len(self.features)}")
        if norm not in NORMS:
            raise ValueError(f"unknown U-Net norm {norm!r}; choose from {', '.join(NORMS)}")
        from monai.networks.nets import BasicUNet  # here, not at the top: importing MONAI takes ~2 s

        self.net = BasicUNet(
            spatial_dims=2, in_channels=in_channels, out_channels=out_channels, features=self.features, norm=NORMS[norm]
        )

    def forward(self, x):
        return self.net(x)
