"""The pretraining engine: subjects drawn from label maps with any T1w acquisition, and one canonical T2w target.

A subject (:func:`engine_subject`, deterministic from its seed) is a label map (one of those given) deformed
and posed at random, with per-subject relaxation jitter, within-tissue texture shared by both contrasts, and
lesions at times (:mod:`.pathology`).  Its T1w is acquired by a random sequence (:func:`draw_t1w_sequence`:
MPRAGE over a range of TI, TR and flip angle, a spoiled gradient echo, or a spin-echo T1w) at 1.5 T or 3 T
(:mod:`.sequences`), then degraded as scanners and users do (:func:`degrade`): bias field, voxels of 0.7-1.5 mm
and thick slices up to 5 mm along any axis (partial volume), Rician noise, motion-like ghosting at times,
skull stripping, or random intensities for every tissue outside the brain.  Its target is always the same:
HCP's T2w as :mod:`.signal` models it, at 3 T, noise- and bias-free.  Both lie on one ``work_mm`` grid, the grid
the pretrained network works on whatever the input's, in the signal model's units: the recipe that trains on them
normalizes them as the model's input contract says, the T1w over ``normalizing``, the brain mask a user might give
(grown or shrunk a little: an automatic mask is not the truth).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage

from . import tissues as T
from .anatomy import Anatomy, label_map_anatomy
from .pathology import PathologyOdds, add_pathology
from .sequences import SPGR, at_field
from .signal import MPRAGE, SpinEcho, bias_field, rician, smooth_random_field
from .subject import UNCALIBRATED_TEXTURE, Variation, _sample_coordinates, _signal_images, _texture

#: The target of every subject: HCP's T2w as the simulator models it (TR 3200 ms, equivalent TE 140 ms), 3 T.
CANONICAL_T2W = SpinEcho()
#: Pose and tissue variety of the engine's subjects (wider than :class:`.subject.Variation`'s HCP-like defaults).
#: Every field the engine reads is set here, so that the simulator's defaults (:class:`.subject.Variation`) may change
#: without changing the recipe of the shipped weights.
ENGINE_VARIATION = replace(
    Variation(),
    deformation_mm=2.5,
    deformation_spacing_mm=30.0,
    rotation_deg=6.0,
    shift_mm=6.0,
    scale_sd=0.06,
    relaxation_sd=0.06,
    partial_volume_sigma_vox=0.6,
    texture_sd=0.05,
    texture_spacing_mm=12.0,
    **UNCALIBRATED_TEXTURE,
)


@dataclass(frozen=True)
class EngineSettings:
    """The ranges every subject's acquisition is drawn from (:func:`draw_t1w_sequence` holds the sequences')."""

    work_mm: float = 1.0  # the grid of input and target (the pretrained network's)
    tesla_1_5: float = 0.4  # chance of 1.5 T relaxation for the T1w
    voxel_mm: tuple[float, float] = (0.7, 1.5)  # acquired voxel size
    thick: float = 0.4  # chance of thick slices along a random axis
    thick_mm: tuple[float, float] = (2.0, 5.0)
    snr: tuple[float, float] = (8.0, 60.0)  # brain-median signal over noise SD, at the acquired resolution
    bias: tuple[float, float] = (0.0, 0.35)  # SD of the log bias field
    ghosting: float = 0.1  # chance of motion-like ghosts along a random phase-encoding axis
    stripped: float = 0.35  # chance of a skull-stripped input
    random_head: float = 0.5  # chance, for a whole head, of random intensities for every non-brain tissue
    gamma: float = 0.3  # chance of a random gamma (a reconstruction's non-linear intensity scale)
    mask_jitter_vox: int = 2  # the mask normalizing the input grown or shrunk by up to this (a user's mask)
    pathology: PathologyOdds = field(default_factory=PathologyOdds)
    variation: Variation = ENGINE_VARIATION


@dataclass
class EngineSubject:
    """Input and target on the work grid (RAS, ``work_mm`` voxels)."""

    t1: np.ndarray  # float32, the acquired T1w
    t2: np.ndarray  # float32, the canonical T2w
    brain: np.ndarray  # bool, the brain mask
    normalizing: np.ndarray  # bool, the brain mask a user would give: ``brain`` grown or shrunk by a few voxels
    lesions: np.ndarray  # uint8, mrsynth.simulate.pathology.LESIONS labels
    codes: np.ndarray  # int32, the label map's FreeSurfer codes (lesions not among them)
    affine: np.ndarray
    parameters: dict


def draw_t1w_sequence(rng: np.random.Generator):
    """A T1w sequence and its description: MPRAGE (TI 700-1200 ms, a readout of 100-200 pulses 6-10 ms apart, TR
    200-1400 ms longer than inversion and readout, flip 6-12 degrees), spoiled
    gradient echo (TR 8-40 ms, TE 2-6 ms, flip 12-40 degrees) or spin echo (TR 350-800 ms, TE 8-25 ms)."""
    kind = rng.choice(["mprage", "spgr", "spin-echo"], p=[0.45, 0.3, 0.25])
    if kind == "spgr":
        sequence = SPGR(tr=rng.uniform(8, 40), te=rng.uniform(2, 6), flip_deg=rng.uniform(12, 40))
    elif kind == "spin-echo":
        sequence = SpinEcho(tr=rng.uniform(350, 800), te=rng.uniform(8, 25))
    else:  # the readout train, centred on the k-space centre at TI, fits between inversions
        ti, spacing = rng.uniform(700, 1200), rng.uniform(6.0, 10.0)
        pulses = int(min(rng.integers(100, 201), 2 * ((ti - 100) // spacing)))
        tr = ti + pulses * spacing / 2 + rng.uniform(200, 1400)
        sequence = MPRAGE(tr=tr, ti=ti, flip_deg=rng.uniform(6, 12), echo_spacing=spacing, readout_pulses=pulses)
    return sequence, {"kind": str(kind), **{k: float(v) for k, v in asdict(sequence).items()}}


@lru_cache(maxsize=32)
def _anatomy(path: str) -> Anatomy:
    return label_map_anatomy(Path(path))


def engine_subject(
    anatomy: str | Path | Anatomy, seed: int, settings: EngineSettings = EngineSettings(), sequence=None
) -> EngineSubject:
    """One subject of the engine from a label map (a path, loaded once per process, or an anatomy) and a seed
    (deterministic); ``sequence`` imposes the T1w sequence (benchmarks: sequences outside the drawn ranges)."""
    rng = np.random.default_rng(seed)
    name = anatomy.name if isinstance(anatomy, Anatomy) else Path(anatomy).name
    anatomy = anatomy if isinstance(anatomy, Anatomy) else _anatomy(str(anatomy))
    variation = settings.variation
    pathology = add_pathology(anatomy, rng, settings.pathology)
    values = {**T.jittered(rng, variation.relaxation_sd), **pathology.tissues}
    drawn, acquisition = draw_t1w_sequence(rng)
    if sequence is not None:
        acquisition = {"kind": type(sequence).__name__, **{k: float(v) for k, v in asdict(sequence).items()}}
    sequence = sequence or drawn
    tesla = 1.5 if rng.random() < settings.tesla_1_5 else 3.0
    texture = _texture(rng, anatomy, variation)
    (t1,) = _signal_images(pathology.anatomy, at_field(values, tesla), variation, (sequence,), texture)
    (t2,) = _signal_images(pathology.anatomy, values, variation, (CANONICAL_T2W,), texture)
    extent = np.array(anatomy.codes.shape) * np.abs(np.diag(anatomy.affine)[:3])
    shape = tuple(int(n) for n in np.floor(extent / settings.work_mm))
    affine = np.diag([settings.work_mm] * 3 + [1.0])
    affine[:3, 3] = anatomy.affine[:3, 3]
    coordinates, geometry = _sample_coordinates(anatomy, shape, affine, rng, variation)
    resample = lambda volume, order: ndimage.map_coordinates(volume, coordinates, order=order, mode="constant")
    codes, brain = resample(anatomy.codes, 0), resample(anatomy.mask.astype(np.uint8), 0) > 0
    lesions = resample(pathology.labels, 0).astype(np.uint8)
    t1, t2 = resample(t1, 1).astype(np.float32), resample(t2, 1).astype(np.float32)
    t1, degradation = degrade(t1, brain, codes, rng, settings)
    parameters = {
        "seed": seed,
        "map": name,
        "t1w": acquisition | {"tesla": tesla},
        "geometry": geometry,
        "degradation": degradation,
        "lesions": {int(k): int(n) for k, n in zip(*np.unique(lesions[lesions > 0], return_counts=True))},
    }
    normalizing = _jittered_mask(brain, rng, settings.mask_jitter_vox)
    return EngineSubject(t1, t2.astype(np.float32), brain, normalizing, lesions, codes, affine, parameters)


def _jittered_mask(brain: np.ndarray, rng: np.random.Generator, most: int) -> np.ndarray:
    """The brain mask grown or shrunk by up to ``most`` voxels (an automatic mask is not the truth)."""
    width = int(rng.integers(-most, most + 1))
    if width > 0:
        return ndimage.binary_dilation(brain, iterations=width)
    if width < 0:
        shrunk = ndimage.binary_erosion(brain, iterations=-width)
        return shrunk if shrunk.any() else brain
    return brain


def degrade(
    t1: np.ndarray, brain: np.ndarray, codes: np.ndarray, rng: np.random.Generator, settings: EngineSettings
) -> tuple[np.ndarray, dict]:
    """The clean T1w acquired as a scanner and a user would leave it (the module docstring), on the same grid."""
    record = {}
    stripped = bool(rng.random() < settings.stripped)
    if not stripped and rng.random() < settings.random_head:
        t1 = _random_head(t1, brain, codes, rng)
        record["random_head"] = True
    strength = rng.uniform(*settings.bias)
    t1 = t1 * bias_field(rng, t1.shape, strength)
    voxel = np.full(3, rng.uniform(*settings.voxel_mm)) / settings.work_mm
    if rng.random() < settings.thick:
        voxel[rng.integers(3)] = rng.uniform(*settings.thick_mm) / settings.work_mm
    snr = rng.uniform(*settings.snr)
    t1 = _acquired(t1, voxel, brain, snr, rng)
    if rng.random() < settings.ghosting:
        axis, copies = int(rng.integers(3)), rng.uniform(0.02, 0.1)
        t1 = t1 + copies * np.roll(t1, t1.shape[axis] // int(rng.integers(2, 5)), axis=axis)
        record["ghosting"] = {"axis": axis, "amplitude": float(copies)}
    if rng.random() < settings.gamma:
        peak = float(np.percentile(t1[brain], 99)) if brain.any() else 1.0
        exponent = float(np.exp(rng.uniform(-0.35, 0.35)))
        t1 = peak * np.clip(t1 / peak, 0, None) ** exponent
        record["gamma"] = exponent
    if stripped:
        t1 = t1 * _jittered_mask(brain, rng, settings.mask_jitter_vox)
    record.update(
        {
            "stripped": stripped,
            "bias": float(strength),
            "voxel_mm": (voxel * settings.work_mm).tolist(),
            "snr": float(snr),
        }
    )
    return t1.astype(np.float32), record


def _acquired(image: np.ndarray, voxel: np.ndarray, brain: np.ndarray, snr: float, rng) -> np.ndarray:
    """``image`` averaged into voxels of ``voxel`` work-grid voxels (partial volume), with Rician noise there,
    and interpolated back onto the work grid."""
    coarse = centred_box(image, np.maximum(np.round(voxel), 1).astype(int))
    shape = np.maximum(np.round(np.array(image.shape) / voxel), 2).astype(int)
    coarse = ndimage.zoom(coarse, shape / np.array(image.shape), order=1, grid_mode=True, mode="nearest")
    reference = float(np.median(image[brain])) if brain.any() else float(image.mean())
    coarse = rician(rng, coarse, reference / snr)
    return ndimage.zoom(coarse, np.array(image.shape) / shape, order=1, grid_mode=True, mode="nearest")[
        : image.shape[0], : image.shape[1], : image.shape[2]
    ]


def centred_box(image: np.ndarray, sizes) -> np.ndarray:
    """The mean over a box of ``sizes`` voxels centred on each voxel.  ndimage's box of even width sits half a
    voxel off centre, which would shift the T1w against its T2w target: an even width is averaged over its two
    placements."""
    out = image
    for axis, size in enumerate(int(n) for n in sizes):
        box = ndimage.uniform_filter1d(out, size, axis=axis, mode="nearest")
        if size % 2 == 0:
            box = (box + ndimage.uniform_filter1d(out, size, axis=axis, mode="nearest", origin=-1)) / 2
        out = box
    return out


def _random_head(t1: np.ndarray, brain: np.ndarray, codes: np.ndarray, rng) -> np.ndarray:
    """Every tissue outside the brain painted a random intensity (0-1.5 of the brain's 99th percentile; air dark)
    with a smooth random texture: no site's face, skull or neck is learnt."""
    outside = ~brain
    peak = float(np.percentile(t1[brain], 99)) if brain.any() else float(t1.max())
    values, inverse = np.unique(codes[outside], return_inverse=True)
    table = rng.uniform(0, 1.5, len(values)) * peak
    table[values == 0] *= 0.1  # air
    painted = t1.copy()
    texture = np.exp(0.2 * smooth_random_field(rng, t1.shape, 6))
    painted[outside] = table[inverse] * texture[outside]
    return ndimage.gaussian_filter(painted, 0.5) * outside + t1 * brain
