"""2D patches of prepared subjects: the patch grid and the torch Dataset (training batches).

Grid placement rule.  Along a slice dimension of length ``L``, patches of size
``P`` with stride ``S`` start at ``o, o + S, ..., o + (n - 1) S`` with
``n = floor((L - P) / S) + 1`` and ``o = floor((L - (n - 1) S - P) / 2)``: the
largest grid that fits, centred in the slice.  For the paper's HCP slices
(260 x 311, P = 128, S = 24) that is 6 x 8 = 48 patches per slice and 12,480
per 260-slice subject, the paper's numbers.  A dimension shorter than ``P`` gets
one patch centred on it; the parts outside the slice read as background
(intensity 0, tissue class ``unknown``).

Tile grid (``PatchGrid.tiles``, tile training): ``ceil((L - P) / P) + 1`` tiles spread
evenly from 0 to ``L - P``, so every pixel of the slice is covered, almost all once.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset

from .. import labels
from ..errors import InputError
from ..networks.inputs import BACKGROUND_BITS, InputSpec, gather_windows, stack_slices
from ..networks.normalization import Transform
from .cache import PreparedSubject

#: Input choices: the T1w alone, or the T1w with the eight tissue masks.
CHANNELS = (1, 1 + len(labels.CLASSES))


@dataclass(frozen=True)
class PatchGrid:
    size: int = 128
    stride: int = 24
    cover: bool = False  # tiles: enough tiles to cover the whole slice, spread evenly

    def __post_init__(self):
        if self.size < 1 or self.stride < 1:
            raise ValueError(f"patch size and stride must be positive, got {self.size}/{self.stride}")

    @classmethod
    def tiles(cls, size: int) -> "PatchGrid":
        """Tiles that cover each slice once with the least overlap (tile training)."""
        return cls(size, size, cover=True)

    def starts(self, length: int) -> np.ndarray:
        """Start offsets of the patches along one slice dimension (see the module docstring)."""
        if length < self.size:
            return np.array([(length - self.size) // 2])
        if self.cover:
            count = -(-(length - self.size) // self.size) + 1
            return np.round(np.linspace(0, length - self.size, count)).astype(int)
        count = (length - self.size) // self.stride + 1
        offset = (length - (count - 1) * self.stride - self.size) // 2
        return offset + self.stride * np.arange(count)

    def per_slice(self, slice_shape: Sequence[int]) -> int:
        return len(self.starts(slice_shape[0])) * len(self.starts(slice_shape[1]))

    def count(self, stored_shape: Sequence[int]) -> int:
        """Patches in a slice-major volume of ``stored_shape``."""
        return stored_shape[0] * self.per_slice(stored_shape[1:])


@dataclass
class _SubjectPatches:
    subject: PreparedSubject
    rows: np.ndarray
    cols: np.ndarray
    count: int
    t1_transform: Transform
    t2_transform: Transform | None


class PatchDataset(Dataset):
    """``(input, target)`` patches of prepared subjects, read from the memory maps.

    ``input`` is what the model's :class:`~mrsynth.networks.InputSpec` says, built by
    :func:`~mrsynth.networks.stack_slices` as at prediction: ``(1, P, P)`` (T1w) or ``(9, P, P)`` (T1w + eight
    tissue masks coded -1/+1, paper section 3); with 2.5D context the T1w of the neighbouring slices follow the
    slice's own (order ``s, s-c, ..., s-1, s+1, ..., s+c``; slices outside the volume read as background), before
    the masks; stripped by the subject's own brain mask where the spec says so; normalized by the spec's
    normalization.  ``target`` is ``(1, P, P)`` T2w.  A patch is addressed by a global index (subjects in the
    given order, then slice, row, column); ``indices`` restricts the dataset to some of them (a split).  Only the
    arrays of one patch are read per item, and memory maps are opened per read, so memory does not grow with the
    number of subjects.  Subjects must lie on the spec's grid (:func:`~mrsynth.data.grids.on_grid`).
    """

    def __init__(
        self,
        subjects: Sequence[PreparedSubject],
        spec: InputSpec,
        grid: PatchGrid = PatchGrid(),
        indices: np.ndarray | None = None,
        with_target: bool = True,
    ):
        self.grid, self.spec, self.with_target = grid, spec, with_target
        self.parts = []
        normalization = spec.normalization
        for subject in subjects:
            if with_target and not subject.has_t2:
                raise ValueError(f"subject {subject.id} has no T2w image to train or test on")
            height, width = subject.stored_shape[1:]
            rows, cols = grid.starts(height), grid.starts(width)
            try:
                transforms = (
                    normalization.transform("t1", subject.stats),
                    normalization.transform("t2", subject.stats) if with_target else None,
                )
            except (ValueError, KeyError) as error:
                raise InputError(f"subject {subject.id}: {error}", subject.folder) from None
            self.parts.append(
                _SubjectPatches(subject, rows, cols, subject.stored_shape[0] * len(rows) * len(cols), *transforms)
            )
        self.offsets = np.cumsum([0] + [p.count for p in self.parts])
        self.total = int(self.offsets[-1])
        self.indices = None if indices is None else np.asarray(indices, dtype=np.int64)
        if (
            self.indices is not None
            and len(self.indices)
            and (self.indices.min() < 0 or self.indices.max() >= self.total)
        ):
            raise IndexError(f"patch indices must lie in [0, {self.total})")

    def __len__(self) -> int:
        return self.total if self.indices is None else len(self.indices)

    def locate_many(self, items: Sequence[int]) -> tuple[np.ndarray, ...]:
        """``(subject position, slice, row start, column start)`` arrays for dataset items ``items``."""
        items = np.asarray(items, dtype=np.int64).reshape(-1)
        index = items if self.indices is None else self.indices[items]
        if len(index) and (index.min() < 0 or index.max() >= self.total):
            raise IndexError(f"patch index out of range [0, {self.total})")
        part = np.searchsorted(self.offsets, index, side="right") - 1
        local = index - self.offsets[part]
        rows, cols = np.empty_like(index), np.empty_like(index)
        slices = np.empty_like(index)
        for p in np.unique(part):  # a loop over subjects, not patches
            where = part == p
            grid = self.parts[p]
            slices[where], within = np.divmod(local[where], len(grid.rows) * len(grid.cols))
            r, c = np.divmod(within, len(grid.cols))
            rows[where], cols[where] = grid.rows[r], grid.cols[c]
        return part, slices, rows, cols

    def locate(self, item: int) -> tuple[int, int, int, int]:
        """``(subject position, slice, row start, column start)`` of dataset item ``item``."""
        if not -len(self) <= item < len(self):
            raise IndexError(item)
        return tuple(int(v[0]) for v in self.locate_many([item % len(self)]))

    @property
    def input_channels(self) -> int:
        """Channels of a network input: T1w slices, then the masks if any."""
        return self.spec.in_channels

    def _windows(self, name: str, part: int, slices, rows, cols, fill) -> np.ndarray:
        """``(B, P, P)`` windows of one subject's array, gathered in one vectorized read."""
        volume = self.parts[part].subject.array(name)
        return gather_windows(volume, slices, rows, cols, (self.grid.size,) * 2, fill, self.spec.edge)

    def brain_fractions(self) -> np.ndarray:
        """The fraction of brain pixels in every item's window, in item order (one pass over each subject's classes).

        Summed-area tables per slice give every window's brain count at once; window parts
        outside the slice count as background.
        """
        size = self.grid.size
        fractions = np.empty(self.total)
        for p, part in enumerate(self.parts):
            brain = labels.in_brain(part.subject.array("tissue"))
            table = np.zeros((brain.shape[0], brain.shape[1] + 1, brain.shape[2] + 1), np.int32)
            np.cumsum(np.cumsum(brain, axis=1), axis=2, out=table[:, 1:, 1:])
            r0, c0 = np.clip(part.rows, 0, brain.shape[1]), np.clip(part.cols, 0, brain.shape[2])
            r1, c1 = np.clip(part.rows + size, 0, brain.shape[1]), np.clip(part.cols + size, 0, brain.shape[2])
            counts = table[:, r1][:, :, c1] - table[:, r0][:, :, c1] - table[:, r1][:, :, c0] + table[:, r0][:, :, c0]
            fractions[self.offsets[p] : self.offsets[p + 1]] = counts.reshape(-1) / size**2
        return fractions if self.indices is None else fractions[self.indices]

    def restricted(self, items: np.ndarray) -> "PatchDataset":
        """The same dataset reduced to some of its items (positions in this dataset, in the given order)."""
        narrowed = copy.copy(self)
        index = np.asarray(items, dtype=np.int64)
        narrowed.indices = index if self.indices is None else self.indices[index]
        return narrowed

    def brain_windows(self, items: Sequence[int]) -> np.ndarray:
        """The brain masks ``(B, P, P)`` (bool) of dataset items ``items``, whatever the input channels."""
        part, slices, rows, cols = self.locate_many(items)
        brain = np.empty((len(part), self.grid.size, self.grid.size), bool)
        for p in np.unique(part):
            where = np.flatnonzero(part == p)
            bits = self._windows("tissue", p, slices[where], rows[where], cols[where], BACKGROUND_BITS)
            brain[where] = (bits >> labels.BIT["brain"]) & 1 == 1
        return brain

    def batch(self, items: Sequence[int]):
        """Inputs ``(B, C, P, P)`` (and targets ``(B, 1, P, P)``) of many items, built per subject
        with vectorized reads and arithmetic (no Python loop over patches)."""
        part, slices, rows, cols = self.locate_many(items)
        size, count = self.grid.size, len(part)
        inputs = np.empty((count, self.spec.in_channels, size, size), np.float32)
        targets = np.empty((count, 1, size, size), np.float32) if self.with_target else None
        needs_bits = self.spec.strip or self.spec.tissue_masks
        for p in np.unique(part):
            where = np.flatnonzero(part == p)
            subject, at = self.parts[p].subject, (slices[where], rows[where], cols[where])
            bits = subject.array("tissue") if needs_bits else None
            inputs[where] = stack_slices(
                self.spec, subject.array("t1"), *at, (size, size), self.parts[p].t1_transform, bits
            )
            if targets is not None:
                targets[where, 0] = self.parts[p].t2_transform(self._windows("t2", p, *at, 0.0))
        inputs = torch.from_numpy(inputs)
        return inputs if targets is None else (inputs, torch.from_numpy(targets))

    def __getitem__(self, item):
        """One item (an int), or a batch (a sequence of ints: what :func:`batch_loader` asks for)."""
        if isinstance(item, (int, np.integer)):
            if not -len(self) <= item < len(self):
                raise IndexError(item)
            out = self.batch([int(item) % len(self)])
            return out[0] if not self.with_target else (out[0][0], out[1][0])
        return self.batch(item)


def batch_loader(dataset: PatchDataset, order: Sequence[int], batch_size: int, workers: int = 0) -> DataLoader:
    """Batches of ``dataset`` in ``order``, each built in one vectorized call (``dataset[list]``)."""
    sampler = BatchSampler(list(order), batch_size, drop_last=False)
    return DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=workers)
