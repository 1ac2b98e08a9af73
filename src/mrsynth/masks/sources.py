"""Where a subject's brain and tissue masks come from: its own files, or computed from its T1w by a method.

``files`` (FreeSurfer's segmentation and brain mask), ``learned`` (:mod:`.segmenter`, the default of ``auto``)
or ``ants-atlas`` (:mod:`.atlas`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from . import atlas, segmenter
from .common import AutoMasks, check_t1

#: Methods of ``compute_masks``: atlas registration (ANTs, the ``masks`` extra) or the learned segmenter.
MASK_METHODS = (atlas.METHOD, segmenter.METHOD)
DEFAULT_METHOD = segmenter.METHOD  # measured better for T2w prediction everywhere (benchmarks/RESULTS.md, masks)
#: Where masks come from: the subject's files, or computed from its T1w (this module) by the default method
#: (``auto``) or a named one.
SOURCES = ("files", "auto") + MASK_METHODS


def refuse_auto_on_cache(cache: str | Path) -> None:
    """Automatic masks asked for a prepared cache: its masks were fixed when it was prepared."""
    raise InputError(
        "automatic --masks apply to data folders; a prepared cache has its masks already "
        "(prepare it with --masks auto)",
        cache,
    )


def check_source(masks: str) -> str:
    """A valid masks source with ``auto`` resolved: ``files`` or one of ``MASK_METHODS``."""
    if masks not in SOURCES:
        raise InputError(f"--masks must be one of {', '.join(SOURCES)}, got {masks!r}")
    return DEFAULT_METHOD if masks == "auto" else masks


def check_method(method: str) -> str:
    if method not in MASK_METHODS:
        raise InputError(f"the masks method must be one of {', '.join(MASK_METHODS)}, got {method!r}")
    return method


def recorded_method(method: str) -> str:
    """The method a model's or subject's record names: ``auto`` in records written before there were two
    methods meant the atlas."""
    return atlas.METHOD if method == "auto" else method


def describe(record: dict | None) -> str:
    """One word for a masks record: ``files`` or the automatic method and version."""
    if not record or record.get("method") in (None, "files"):
        return "files"
    return f"{record['method']} v{record['version']}"


def compute_masks(
    t1: np.ndarray, affine: np.ndarray, source: str | Path = "T1w", method: str | None = None
) -> AutoMasks:
    """Brain mask and FreeSurfer-style labels of one T1w (array + affine), on its grid, by ``method`` (one of
    ``MASK_METHODS``; ``None``: ``DEFAULT_METHOD``)."""
    method = check_method(method or DEFAULT_METHOD)
    check_t1(t1, affine, source)
    if method == segmenter.METHOD:
        return segmenter.learned_masks(t1, affine, source)
    return atlas.atlas_masks(t1, affine, source)
