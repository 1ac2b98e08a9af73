"""Pathology drawn into an anatomy: MS-like white-matter lesions and tumour-like masses, each a tissue of its own.

Multiple-sclerosis-like lesions are irregular ellipsoids of 2-7 mm radius in the cerebral white matter, most of
them within 12 mm of a lateral ventricle.  A tumour-like mass is a rounded, irregular mass of 8-22 mm radius
centred in cerebral white matter, often with a necrotic core, a solid rim, and oedema spreading 5-25 mm further
through the white matter.  Their relaxation values are drawn per subject from wide ranges around what is
reported at 3 T (T1 and T2 longer than white matter's, necrosis approaching fluid), so that every lesion is
T1-hypointense and T2-hyperintense as in real scans without the network learning one value:

====================  ===============  ==============  ===========
tissue                T1 (ms)          T2 (ms)         PD
====================  ===============  ==============  ===========
MS lesion             1100-1700        100-200         0.70-0.85
tumour (solid rim)    1200-1800        100-180         0.75-0.88
oedema                1300-1900        140-320         0.78-0.92
necrosis              2200-3800        300-1200        0.85-0.97
====================  ===============  ==============  ===========

Each lesion voxel is labelled (:data:`LESIONS`), so that benchmarks can measure the lesion-to-white-matter
contrast of a prediction.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from . import tissues as T
from .anatomy import Anatomy
from .signal import smooth_random_field

#: Lesion labels, and the tissue each is simulated as.
LESIONS = {1: "ms_lesion", 2: "oedema", 3: "tumour", 4: "necrosis"}
#: Relaxation ranges at 3 T: (T1 ms, T2 ms, PD) low and high.
RANGES = {
    "ms_lesion": ((1100, 100, 0.70), (1700, 200, 0.85)),
    "tumour": ((1200, 100, 0.75), (1800, 180, 0.88)),
    "oedema": ((1300, 140, 0.78), (1900, 320, 0.92)),
    "necrosis": ((2200, 300, 0.85), (3800, 1200, 0.97)),
}
LATERAL_VENTRICLES = (4, 43)
PERIVENTRICULAR_MM = 12.0


@dataclass(frozen=True)
class PathologyOdds:
    """How often, and how much: the chance of MS-like lesions and of a tumour per subject."""

    ms: float = 0.3
    tumour: float = 0.2
    ms_count: tuple[int, int] = (3, 15)
    ms_radius_mm: tuple[float, float] = (2.0, 7.0)
    tumour_radius_mm: tuple[float, float] = (8.0, 22.0)
    oedema_mm: tuple[float, float] = (5.0, 25.0)


@dataclass
class Pathology:
    """An anatomy with lesions: its tissue map (lesion tissues after the tissue table's), the lesion tissues'
    values in that order, and the lesion labels."""

    anatomy: Anatomy
    tissues: dict[str, T.Tissue]
    labels: np.ndarray  # uint8, LESIONS keys, 0 elsewhere


def lesion_tissues(rng: np.random.Generator) -> dict[str, T.Tissue]:
    """This subject's lesion tissues, drawn from :data:`RANGES`."""
    out = {}
    for name, (low, high) in RANGES.items():
        t1, t2, pd = (float(rng.uniform(a, b)) for a, b in zip(low, high))
        out[name] = T.Tissue(t1, t2, pd, "drawn from the ranges of mrsynth.simulate.pathology")
    return out


def add_pathology(anatomy: Anatomy, rng: np.random.Generator, odds: PathologyOdds = PathologyOdds()) -> Pathology:
    """Lesions drawn into a copy of ``anatomy`` (its tissue map); none with probability ``1 - ms - tumour``."""
    tissues = lesion_tissues(rng)
    index = {name: len(T.NAMES) + i for i, name in enumerate(tissues)}
    tissue, lesions = anatomy.tissue.copy(), np.zeros(anatomy.tissue.shape, np.uint8)
    white = (anatomy.tissue == T.INDEX["wm"]) & anatomy.mask
    draw = rng.random()
    if draw < odds.ms:
        _ms_lesions(anatomy, white, rng, odds, lesions)
    elif draw < odds.ms + odds.tumour:
        _tumour(white, anatomy.mask, rng, odds, lesions)
    for label, name in LESIONS.items():
        tissue[lesions == label] = index[name]
    return Pathology(replace(anatomy, tissue=tissue), tissues, lesions)


def _blob(shape, centre, radii, rng: np.random.Generator, roughness: float = 0.3):
    """An irregular ellipsoid: its box (slices) and the mask inside it."""
    reach = np.ceil(np.asarray(radii) * (1 + roughness)).astype(int) + 1
    low = np.maximum(np.asarray(centre) - reach, 0)
    high = np.minimum(np.asarray(centre) + reach + 1, shape)
    box = tuple(slice(a, b) for a, b in zip(low, high))
    grid = np.indices(tuple(high - low), dtype=np.float32)
    distance = np.sqrt(sum(((g + a - c) / r) ** 2 for g, a, c, r in zip(grid, low, centre, radii)))
    bumps = smooth_random_field(rng, distance.shape, 3) if min(distance.shape) > 3 else 0.0
    return box, distance + roughness * bumps < 1


def _ms_lesions(anatomy: Anatomy, white: np.ndarray, rng, odds: PathologyOdds, lesions: np.ndarray) -> None:
    ventricles = np.isin(anatomy.codes, LATERAL_VENTRICLES)
    near = ndimage.distance_transform_edt(~ventricles) <= PERIVENTRICULAR_MM if ventricles.any() else white
    places = {True: np.argwhere(white & near), False: np.argwhere(white)}
    for _ in range(int(rng.integers(odds.ms_count[0], odds.ms_count[1] + 1))):
        candidates = places[bool(rng.random() < 0.7 and len(places[True]))]
        if not len(candidates):
            return
        centre = candidates[rng.integers(len(candidates))]
        radius = rng.uniform(*odds.ms_radius_mm)
        box, inside = _blob(lesions.shape, centre, radius * rng.uniform(0.6, 1.4, 3), rng)
        lesions[box][inside & white[box]] = 1


def _tumour(white: np.ndarray, brain: np.ndarray, rng, odds: PathologyOdds, lesions: np.ndarray) -> None:
    """Oedema through the white matter around a mass: a solid rim around a necrotic core (in 7 of 10)."""
    deep = ndimage.distance_transform_edt(white) >= 4
    candidates = np.argwhere(deep if deep.any() else white)
    if not len(candidates):
        return
    centre = candidates[rng.integers(len(candidates))]
    radius = rng.uniform(*odds.tumour_radius_mm)
    reach = radius + rng.uniform(*odds.oedema_mm)
    box, oedema = _blob(lesions.shape, centre, np.full(3, reach), rng, roughness=0.5)
    lesions[box][oedema & white[box]] = 2
    box, mass = _blob(lesions.shape, centre, radius * rng.uniform(0.8, 1.2, 3), rng)
    lesions[box][mass & brain[box]] = 3
    if rng.random() < 0.7:
        box, core = _blob(lesions.shape, centre, radius * rng.uniform(0.3, 0.7) * np.ones(3), rng, roughness=0.2)
        lesions[box][core & brain[box]] = 4
