"""2D patches of prepared subjects: the patch grid, the torch Dataset and the data splits.

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

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from . import labels
from .cache import PreparedSubject
from .normalization import Normalization

BACKGROUND_BITS = np.uint8(1 << labels.BIT["unknown"])


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


def read_window(volume: np.ndarray, index: int, row: int, col: int, size: int, fill) -> np.ndarray:
    """``volume[index, row:row+size, col:col+size]``, padded with ``fill`` outside the slice."""
    height, width = volume.shape[1:]
    r0, r1 = max(row, 0), min(row + size, height)
    c0, c1 = max(col, 0), min(col + size, width)
    if (r0, r1, c0, c1) == (row, row + size, col, col + size):
        return np.array(volume[index, r0:r1, c0:c1])
    out = np.full((size, size), fill, dtype=volume.dtype)
    out[r0 - row : r1 - row, c0 - col : c1 - col] = volume[index, r0:r1, c0:c1]
    return out


@dataclass
class _SubjectPatches:
    subject: PreparedSubject
    rows: np.ndarray
    cols: np.ndarray
    count: int
    t1_transform: tuple[float, float]
    t2_transform: tuple[float, float] | None


class PatchDataset(Dataset):
    """``(input, target)`` patches of prepared subjects, read from the memory maps.

    ``input`` is ``(1, P, P)`` (T1w) or ``(9, P, P)`` (T1w + eight tissue masks
    coded -1/+1, paper section 3); ``target`` is ``(1, P, P)`` T2w.  Both are
    normalized with ``normalization``.  A patch is addressed by a global index
    (subjects in the given order, then slice, row, column); ``indices`` restricts
    the dataset to some of them (a split).  Only the arrays of one patch are read
    per item, and memory maps are opened per read, so memory does not grow with
    the number of subjects.
    """

    def __init__(self, subjects: Sequence[PreparedSubject], normalization: Normalization,
                 grid: PatchGrid = PatchGrid(), channels: int = 9,
                 indices: np.ndarray | None = None, with_target: bool = True):
        if channels not in (1, 1 + len(labels.CLASSES)):
            raise ValueError(f"input channels must be 1 or {1 + len(labels.CLASSES)}, got {channels}")
        self.grid, self.channels, self.with_target = grid, channels, with_target
        self.parts = []
        for subject in subjects:
            if with_target and not subject.has_t2:
                raise ValueError(f"subject {subject.id} has no T2w image to train or test on")
            height, width = subject.stored_shape[1:]
            rows, cols = grid.starts(height), grid.starts(width)
            self.parts.append(_SubjectPatches(
                subject, rows, cols, subject.stored_shape[0] * len(rows) * len(cols),
                normalization.transform("t1", subject.stats),
                normalization.transform("t2", subject.stats) if with_target else None,
            ))
        self.offsets = np.cumsum([0] + [p.count for p in self.parts])
        self.total = int(self.offsets[-1])
        self.indices = None if indices is None else np.asarray(indices, dtype=np.int64)
        if self.indices is not None and len(self.indices) and (
            self.indices.min() < 0 or self.indices.max() >= self.total
        ):
            raise IndexError(f"patch indices must lie in [0, {self.total})")

    def __len__(self) -> int:
        return self.total if self.indices is None else len(self.indices)

    def locate(self, item: int) -> tuple[int, int, int, int]:
        """``(subject position, slice, row start, column start)`` of dataset item ``item``."""
        index = int(item if self.indices is None else self.indices[item])
        if not 0 <= index < self.total:
            raise IndexError(index)
        part_index = int(np.searchsorted(self.offsets, index, side="right")) - 1
        part = self.parts[part_index]
        local = index - int(self.offsets[part_index])
        per_slice = len(part.rows) * len(part.cols)
        slice_index, within = divmod(local, per_slice)
        row, col = divmod(within, len(part.cols))
        return part_index, slice_index, int(part.rows[row]), int(part.cols[col])

    def brain_window(self, item: int) -> np.ndarray:
        """The brain mask (bool) of dataset item ``item``, whatever the input channels."""
        part_index, slice_index, row, col = self.locate(item)
        bits = read_window(self.parts[part_index].subject.array("tissue"), slice_index, row, col,
                           self.grid.size, BACKGROUND_BITS)
        return (bits >> labels.BIT["brain"]) & 1 == 1

    def __getitem__(self, item: int):
        part_index, slice_index, row, col = self.locate(item)
        part = self.parts[part_index]
        size = self.grid.size
        scale, shift = part.t1_transform
        t1 = read_window(part.subject.array("t1"), slice_index, row, col, size, 0.0)
        channels = [(t1 * scale + shift)[np.newaxis]]
        if self.channels > 1:
            bits = read_window(part.subject.array("tissue"), slice_index, row, col, size, BACKGROUND_BITS)
            channels.append(labels.expand_bits(bits))
        inputs = torch.from_numpy(np.concatenate(channels).astype(np.float32, copy=False))
        if not self.with_target:
            return inputs
        scale, shift = part.t2_transform
        t2 = read_window(part.subject.array("t2"), slice_index, row, col, size, 0.0)
        return inputs, torch.from_numpy((t2 * scale + shift)[np.newaxis].astype(np.float32, copy=False))


# --------------------------------------------------------------------------- splits

PAPER_FRACTIONS = (0.80, 0.01, 0.19)


@dataclass
class Split:
    """Which subjects (and, within one subject, which patches) train, validate and test.

    ``kind == "within"``: one subject, its patches shuffled with ``seed`` and cut
    by ``fractions`` (the paper's 80/1/19).  ``kind == "across"``: explicit subject
    lists; every patch of a listed subject belongs to its part.
    """

    kind: str
    train: list[str]
    val: list[str]
    test: list[str]
    seed: int | None = None
    fractions: tuple[float, float, float] | None = None
    patches: dict[str, list[int]] = field(default_factory=dict)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self)) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "Split":
        data = json.loads(Path(path).read_text())
        if data.get("fractions") is not None:
            data["fractions"] = tuple(data["fractions"])
        return cls(**data)

    def part_indices(self, part: str) -> np.ndarray | None:
        """Patch indices of ``part`` for a within-subject split; ``None`` means all patches."""
        return np.asarray(self.patches[part], dtype=np.int64) if self.kind == "within" else None


def within_subject_split(subject_id: str, n_patches: int, seed: int = 0,
                         fractions: tuple[float, float, float] = PAPER_FRACTIONS) -> Split:
    """The paper's within-subject split: shuffled patches cut into train/val/test."""
    if abs(sum(fractions) - 1) > 1e-9 or min(fractions) < 0:
        raise ValueError(f"split fractions must be >= 0 and sum to 1, got {fractions}")
    order = np.random.default_rng(seed).permutation(n_patches)
    n_train = int(round(fractions[0] * n_patches))
    n_val = int(round(fractions[1] * n_patches))
    parts = np.split(order, [n_train, n_train + n_val])
    return Split(
        "within", [subject_id], [subject_id], [subject_id], seed, tuple(fractions),
        {name: part.tolist() for name, part in zip(("train", "val", "test"), parts)},
    )


def across_subject_split(train: Sequence[str], test: Sequence[str], val: Sequence[str] = ()) -> Split:
    """An across-subject split from explicit subject lists (no subject in two parts)."""
    parts = [list(train), list(val), list(test)]
    seen: dict[str, str] = {}
    for name, ids in zip(("train", "val", "test"), parts):
        for subject_id in ids:
            if subject_id in seen:
                raise ValueError(f"subject {subject_id} is in both {seen[subject_id]} and {name}")
            seen[subject_id] = name
    if not parts[0]:
        raise ValueError("an across-subject split needs at least one training subject")
    return Split("across", *parts)
