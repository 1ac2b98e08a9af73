"""Masks: a brain mask and FreeSurfer-style tissue labels from a bare T1w, for subjects without FreeSurfer.

``mrsynth masks`` and ``--masks auto|learned|ants-atlas`` (prepare, predict, crossval) use it, so a model
with tissue masks runs on a T1w that has no segmentation and no brain mask.  :mod:`.sources` says where a
subject's masks come from and computes them by one of two methods: :mod:`.segmenter` (``learned``, the
default: a 2D U-Net shipped with its weights, trained by its recipe on simulated T1w) or :mod:`.atlas`
(``ants-atlas``: the HCP template registered with ANTs).  :mod:`.files` writes them for the ``masks``
command.  Everything is local: no download at run time.
"""

from .common import AutoMasks, check_brain, check_t1, looks_skull_stripped
from .files import OUTPUTS, class_volume, write_masks
from .segmenter import contrast_check
from .sources import (
    DEFAULT_METHOD,
    MASK_METHODS,
    SOURCES,
    check_method,
    check_source,
    compute_masks,
    describe,
    recorded_method,
    refuse_auto_on_cache,
)

__all__ = [
    "AutoMasks",
    "check_brain",
    "check_t1",
    "contrast_check",
    "DEFAULT_METHOD",
    "MASK_METHODS",
    "OUTPUTS",
    "SOURCES",
    "check_method",
    "check_source",
    "class_volume",
    "compute_masks",
    "describe",
    "looks_skull_stripped",
    "recorded_method",
    "refuse_auto_on_cache",
    "write_masks",
]
