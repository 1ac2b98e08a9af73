"""Data: prepared subjects to training batches.

:mod:`.cache` validates subjects once and stores them as memory-mappable arrays (``mrsynth prepare``);
:mod:`.grids` shows them on a model's work grid; :mod:`.patches` cuts slices into the paper's patches (or tiles)
and builds batches with the model's input contract; :mod:`.splits` says who trains, validates and tests;
:mod:`.augment` changes training batches at random.
"""

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
from .grids import GridSubject, on_grid
from .patches import CHANNELS, PatchDataset, PatchGrid, batch_loader
from .splits import PAPER_FRACTIONS, Split, across_subject_split, within_subject_split

__all__ = [
    "AUGMENTATIONS",
    "AugmentConfig",
    "CHANNELS",
    "GridSubject",
    "NativeVolumes",
    "PAPER_FRACTIONS",
    "PatchDataset",
    "PatchGrid",
    "PrepareReport",
    "PrepareResult",
    "PreparedSubject",
    "Split",
    "across_subject_split",
    "augment_batch",
    "batch_loader",
    "is_prepared_cache",
    "list_prepared",
    "masks_source",
    "on_grid",
    "prepare_all",
    "prepare_subject",
    "within_subject_split",
]
