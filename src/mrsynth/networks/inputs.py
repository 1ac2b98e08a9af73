"""The input contract of a model: what its network reads, and the one function that builds it.

A network sees 2D slices of a volume, each with some of its neighbours (2.5D) as extra T1w channels and,
for the paper's models, the eight tissue masks.  How those slices are made from a T1w -- which grid, which
slicing axis, which neighbours in which channel order, what normalization with statistics from where, what
happens beyond the volume's edges -- is the model's :class:`InputSpec`, stored in its description
(:mod:`.modelfile`) and read by training and inference alike.  :func:`stack_slices` is the only code that
builds a network input: training patches, pretraining crops, segmenter crops and whole-volume prediction all
call it, so that what a network is trained on is what it is given (the first shipped weights read the slice
below as their centre because two builders disagreed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np

from .. import labels
from ..errors import InputError
from .grids import WorkGrid, resample_onto, work_grid
from .normalization import Normalization, Transform

#: How slices beyond the volume read: as background (0 before normalization), or as the nearest edge slice.
EDGES = ("zero", "repeat")
#: Where the normalization's statistics come from: the input as given (inside its brain mask), or the volume on
#: the work grid (whole, for a normalization that needs no mask).
STATISTICS = ("input", "work")
#: The mask channels of a model with tissue masks: one per class of ``labels.CLASSES``, coded -1/+1.
MASK_CHANNELS = len(labels.CLASSES)
#: The tissue bits of background (segmentation code 0 outside the brain mask).
BACKGROUND_BITS = np.uint8(1 << labels.BIT["unknown"])


def slice_offsets(context: int) -> tuple[int, ...]:
    """The default channel order of a 2.5D input: the slice, then its neighbours from below to above
    (``0, -c, ..., -1, 1, ..., c``)."""
    return (0,) + tuple(d for d in range(-context, context + 1) if d)


@dataclass(frozen=True)
class InputSpec:
    """How a network's input is made from a T1w volume (and its masks): stored with the model, read by training and
    inference."""

    offsets: tuple[int, ...] = (0,)  # the slices stacked as T1w channels, in channel order, relative to the slice
    tissue_masks: bool = False  # the eight tissue masks (-1/+1) follow the T1w channels
    axis: str = "axial"  # slicing axis: of the work grid when ``grid_mm`` > 0, else of the input
    grid_mm: float = 0.0  # > 0: the input resampled onto a RAS grid of these isotropic voxels; 0: its own grid
    normalization: Normalization = field(default_factory=Normalization)
    statistics: str = "input"  # one of STATISTICS
    strip: bool = False  # the T1w set to 0 outside the brain mask
    brain_only: bool = False  # the output is 0 outside the brain mask (the network learnt only the brain)
    edge: str = "zero"  # one of EDGES
    pad_multiple: int = 1  # each slice zero padded at its end to a multiple of this (a network's poolings)
    flips: tuple[tuple[int, ...], ...] = ((),)  # in-plane flips whose outputs are averaged at prediction
    footprint: bool = False  # a work-grid prediction brought back onto the input's grid as each voxel acquires it:
    # the average over the voxel's footprint (a thick slice averages its thickness), not the value at its centre

    def __post_init__(self):
        object.__setattr__(self, "offsets", tuple(int(o) for o in self.offsets))
        object.__setattr__(self, "flips", tuple(tuple(int(a) for a in f) for f in self.flips))
        if isinstance(self.normalization, dict):
            object.__setattr__(self, "normalization", Normalization(**self.normalization))
        if not self.offsets or self.offsets[0] != 0 or len(set(self.offsets)) != len(self.offsets):
            raise ValueError(f"slice offsets must start with the slice itself (0) and not repeat, got {self.offsets}")
        if self.edge not in EDGES or self.statistics not in STATISTICS:
            raise ValueError(f"edge must be one of {EDGES} and statistics one of {STATISTICS}")
        if self.grid_mm < 0 or self.pad_multiple < 1 or not self.flips:
            raise ValueError("grid_mm must be >= 0, pad_multiple >= 1, and flips hold at least one entry")

    @property
    def context(self) -> int:
        """Neighbouring slices on each side that the input reads."""
        return max(abs(o) for o in self.offsets)

    @property
    def t1_channels(self) -> int:
        return len(self.offsets)

    @property
    def in_channels(self) -> int:
        """The network's input channels: the T1w slices, then the masks if any."""
        return self.t1_channels + (MASK_CHANNELS if self.tissue_masks else 0)

    @property
    def needs_brain(self) -> bool:
        """Whether the input cannot be made without a brain mask."""
        uses_brain_statistics = self.statistics == "input" and self.normalization.method not in ("paper", "foreground")
        return self.tissue_masks or self.strip or self.brain_only or uses_brain_statistics

    def record(self) -> dict:
        """The spec as a JSON-ready dict (a model description's ``input``)."""
        out = asdict(self)
        out["offsets"], out["flips"] = list(self.offsets), [list(f) for f in self.flips]
        return out

    @classmethod
    def from_record(cls, record: dict) -> InputSpec:
        return cls(**{**record, "normalization": Normalization(**record["normalization"])})

    def changes(self, other: InputSpec) -> list[str]:
        """The fields on which ``other`` differs from this spec, as ``name A -> B``."""
        mine, theirs = self.record(), other.record()
        return [f"{k} {mine[k]} -> {theirs[k]}" for k in mine if mine[k] != theirs[k]]

    def with_normalization(self, normalization: Normalization) -> InputSpec:
        return replace(self, normalization=normalization)


def gather_windows(volume, slices, rows, cols, size: tuple[int, int], fill=0, edge: str = "zero") -> np.ndarray:
    """``(B, h, w)`` windows of a slice-major volume: window ``b`` is slice ``slices[b]`` from row ``rows[b]`` and
    column ``cols[b]`` on, ``size`` pixels.  In-plane, what lies outside the slice reads as ``fill``; a slice
    beyond the volume reads as ``fill`` (``edge="zero"``) or as the nearest edge slice (``"repeat"``).  One
    vectorized read, whatever the number of windows."""
    slices, rows, cols = (np.asarray(v, np.int64).reshape(-1) for v in (slices, rows, cols))
    depth, height, width = volume.shape
    r = rows[:, None] + np.arange(size[0])
    c = cols[:, None] + np.arange(size[1])
    out = np.asarray(
        volume[
            np.clip(slices, 0, depth - 1)[:, None, None],
            np.clip(r, 0, height - 1)[:, :, None],
            np.clip(c, 0, width - 1)[:, None, :],
        ]
    )
    inside = ((r >= 0) & (r < height))[:, :, None] & ((c >= 0) & (c < width))[:, None, :]
    if edge == "zero":
        inside = inside & ((slices >= 0) & (slices < depth))[:, None, None]
    return out if inside.all() else np.where(inside, out, np.asarray(fill, out.dtype))


def stack_slices(
    spec: InputSpec,
    t1,
    slices,
    rows,
    cols,
    size: tuple[int, int],
    transform: Transform | None = None,
    bits=None,
    brain=None,
) -> np.ndarray:
    """The network input ``(B, in_channels, h, w)`` float32 of windows of a slice-major volume (see
    :func:`gather_windows`): the T1w of ``spec.offsets`` slices in that order, each zeroed outside the brain of
    its own slice where ``spec.strip`` says so and normalized by ``transform`` (none: the volume is normalized
    already), then the eight tissue masks of the slice itself where ``spec.tissue_masks``.  ``bits`` (the tissue
    bit field) is needed for masks, and gives the brain where ``brain`` (bool) is not given."""
    slices = np.asarray(slices, np.int64).reshape(-1)
    out = np.empty((len(slices), spec.in_channels) + tuple(size), np.float32)
    for channel, offset in enumerate(spec.offsets):
        place = (slices + offset, rows, cols, size)
        window = gather_windows(t1, *place, 0, spec.edge).astype(np.float32, copy=False)
        if spec.strip:
            window = np.where(_brain_windows(place, spec.edge, bits, brain), window, np.float32(0))
        out[:, channel] = window if transform is None else transform(window)
    if spec.tissue_masks:
        window_bits = gather_windows(bits, slices, rows, cols, size, BACKGROUND_BITS, spec.edge)
        out[:, spec.t1_channels :] = np.moveaxis(labels.expand_bits(window_bits), 0, 1)
    return out


def _brain_windows(place, edge: str, bits, brain) -> np.ndarray:
    if brain is not None:
        return gather_windows(brain, *place, False, edge).astype(bool)
    return labels.in_brain(gather_windows(bits, *place, BACKGROUND_BITS, edge))


def whole_slices(start: int, stop: int, window: tuple[slice, slice] = None, shape=None):
    """The :func:`stack_slices` placement of slices ``start:stop`` whole (of in-plane ``shape``) or cropped to
    ``window``: ``(slices, rows, cols, size)``."""
    window = window or (slice(0, shape[0]), slice(0, shape[1]))
    count = stop - start
    return (
        np.arange(start, stop),
        np.full(count, window[0].start),
        np.full(count, window[1].start),
        (window[0].stop - window[0].start, window[1].stop - window[1].start),
    )


#: The largest field of view a work grid covers along an axis: a head is 200-300 mm; more is a wrong voxel size.
MAX_FIELD_OF_VIEW_MM = 1000.0


def onto_work_grid(spec: InputSpec, affine: np.ndarray, shape, source=None) -> WorkGrid:
    """The work grid of a model that has one (``spec.grid_mm``): RAS, isotropic, covering the input (``source``,
    named where its field of view is no head's)."""
    grid = work_grid(shape, affine, spec.grid_mm)
    extent = np.asarray(grid.shape) * spec.grid_mm
    if extent.max() > MAX_FIELD_OF_VIEW_MM:
        raise InputError(
            f"the field of view is {' x '.join(f'{e:.4g}' for e in extent)} mm, no head's: are the voxel sizes in the "
            "header in mm?",
            source,
        )
    return grid


def resample_inputs(grid: WorkGrid, affine: np.ndarray, t1, bits=None, brain=None, t2=None) -> dict:
    """A subject's volumes resampled onto a work grid, one way for training and prediction: intensities
    trilinear, the brain mask trilinear above one half, the tissue bits nearest (their brain bit that mask)."""
    onto = lambda volume, order: resample_onto(volume, affine, grid.shape, grid.affine, order)  # noqa: E731
    if brain is None and bits is not None:
        brain = labels.in_brain(bits)
    out = {"t1": onto(t1, 1), "t2": None if t2 is None else onto(t2, 1), "brain": None, "bits": None}
    if brain is not None:
        out["brain"] = onto(np.asarray(brain, np.float32), 1) > 0.5
    if bits is not None:
        nearest = np.rint(onto(bits, 0)).astype(np.uint8)
        brain_bit = np.uint8(1 << labels.BIT["brain"])
        out["bits"] = np.where(out["brain"], nearest | brain_bit, nearest & ~brain_bit).astype(np.uint8)
    return out
