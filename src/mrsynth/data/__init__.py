"""Data: prepared subjects to training batches.

:mod:`.cache` validates subjects once and stores them as memory-mappable arrays (``mrsynth prepare``);
:mod:`.normalization` fits intensity normalizations on training subjects and applies them anywhere;
:mod:`.patches` cuts slices into the paper's patches (or tiles) and builds batches; :mod:`.splits` says who
trains, validates and tests; :mod:`.augment` changes training batches at random.
"""

from . import normalization
from .augment import AUGMENTATIONS, AugmentConfig, augment_batch
from .cache import (
    NativeVolumes,
    PreparedSubject,
    PrepareReport,
    PrepareResult,
    is_prepared_cache,
    list_prepared,
    masks_source,
    prepare_all,
    prepare_subject,
)
from .normalization import Normalization, Transform, intensity_stats
from .patches import CHANNELS, PatchDataset, PatchGrid, batch_loader, input_channels, slice_offsets
from .splits import PAPER_FRACTIONS, Split, across_subject_split, within_subject_split

__all__ = [
    "AUGMENTATIONS",
    "AugmentConfig",
    "CHANNELS",
    "NativeVolumes",
    "Normalization",
    "PAPER_FRACTIONS",
    "PatchDataset",
    "PatchGrid",
    "PrepareReport",
    "PrepareResult",
    "PreparedSubject",
    "Split",
    "Transform",
    "across_subject_split",
    "augment_batch",
    "batch_loader",
    "input_channels",
    "intensity_stats",
    "is_prepared_cache",
    "list_prepared",
    "masks_source",
    "normalization",
    "prepare_all",
    "prepare_subject",
    "slice_offsets",
    "within_subject_split",
]
