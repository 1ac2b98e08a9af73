"""Which subjects, and within one subject which patches, train, validate and test.

``within_subject_split`` is the paper's section 3: one subject's patches shuffled with a seed and
cut 80/1/19; ``across_subject_split`` takes explicit subject lists.  Both save to and load from JSON.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..atomic import write_text
from ..errors import InputError

#: The paper's within-subject split: 80 % train, 1 % validation, 19 % test (section 3).
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
        write_text(path, json.dumps(asdict(self)) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "Split":
        try:
            data = json.loads(Path(path).read_text())
            if data.get("fractions") is not None:
                data["fractions"] = tuple(data["fractions"])
            split = cls(**data)
            if split.kind not in ("within", "across") or not all(
                isinstance(getattr(split, part), list) for part in ("train", "val", "test")
            ):
                raise ValueError("kind must be within or across, and train/val/test lists of subject ids")
        except (OSError, ValueError, TypeError, AttributeError) as error:
            raise InputError(f"not a readable split ({type(error).__name__}: {error})", path) from None
        return split

    def part_indices(self, part: str) -> np.ndarray | None:
        """Patch indices of ``part`` for a within-subject split; ``None`` means all patches."""
        return np.asarray(self.patches[part], dtype=np.int64) if self.kind == "within" else None


def within_subject_split(
    subject_id: str, n_patches: int, seed: int = 0, fractions: tuple[float, float, float] = PAPER_FRACTIONS
) -> Split:
    """The paper's within-subject split: shuffled patches cut into train/val/test."""
    if abs(sum(fractions) - 1) > 1e-9 or min(fractions) < 0:
        raise ValueError(f"split fractions must be >= 0 and sum to 1, got {fractions}")
    order = np.random.default_rng(seed).permutation(n_patches)
    n_train = int(round(fractions[0] * n_patches))
    n_val = int(round(fractions[1] * n_patches))
    parts = np.split(order, [n_train, n_train + n_val])
    return Split(
        "within",
        [subject_id],
        [subject_id],
        [subject_id],
        seed,
        tuple(fractions),
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
