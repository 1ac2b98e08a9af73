"""One synthetic subject: anatomy + seed -> T1w, T2w, label codes and brain mask (in memory).

Each subject: a smooth random deformation of the anatomy (plus a small random rotation,
scaling and shift), per-tissue relaxation jitter, the HCP-like T1w and T2w signal model
(:mod:`.signal`) with partial volume, a smooth multiplicative bias field per contrast,
Rician noise at a random SNR and a random global intensity scale.  Everything is drawn
from one seed: the same seed gives identical volumes, two seeds two different subjects.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from .. import __version__
from . import tissues as T
from .anatomy import Anatomy
from .signal import MPRAGE, SpinEcho, bias_field, protocol_dict, rician, smooth_random_field


@dataclass(frozen=True)
class Variation:
    """How much subjects differ (all draws seeded)."""

    deformation_mm: float = 2.5  # SD of the smooth displacement per axis
    deformation_spacing_mm: float = 30.0  # control-point spacing of the displacement
    rotation_deg: float = 3.0  # SD per axis
    scale_sd: float = 0.04  # SD of the per-axis scaling
    shift_mm: float = 2.0  # SD per axis
    relaxation_sd: float = 0.03  # relative SD of T1, T2, PD per tissue
    # noise, bias, partial volume and texture: calibrated so that the within-tissue statistics of simulated subjects
    # (CV of T1w and T2w, T1w-T2w correlation, in grey and white matter) lie within 25 % of the HCP MNI152 template
    # pair's (benchmarks/RESULTS.md, simulate_realism): a bias-corrected, low-noise image, as HCP's preprocessed are
    bias_strength: float = 0.015  # SD of log bias field
    snr_range: tuple[float, float] = (80.0, 120.0)  # brain-median signal / noise SD
    gain_range: tuple[float, float] = (0.7, 1.4)  # global intensity scale
    partial_volume_sigma_vox: float = 0.6  # smoothing of label boundaries (label maps)
    partial_volume_sharpness: float = 2.3  # fractions^s renormalized (the default anatomy): above 1, thinner borders
    # acquisition: each subject's protocol drawn around HCP's (MPRAGE TI 1000 ms, flip 8 degrees);
    # the ranges stop where CSF would be less dark in T1w or less bright in T2w than in the HCP templates,
    # or T1w WM/GM contrast 20 % stronger (TI outside ~925-1000 ms, TE below ~125 ms: tests/test_simulate.py)
    ti_range_ms: tuple[float, float] = (925.0, 1000.0)  # MPRAGE inversion time
    flip_range_deg: tuple[float, float] = (7.0, 9.0)  # MPRAGE readout flip angle
    te_range_ms: tuple[float, float] = (130.0, 160.0)  # T2w equivalent echo time
    # within-tissue texture: smooth random relative variation of T1, T2 and PD inside every tissue (myelination:
    # T1 and T2 longer together), grey matter's T1 varying more than white matter's
    texture_sd: float = 0.03  # relative SD of the T1 field
    texture_spacing_mm: float = 12.0  # control-point spacing of the texture fields
    texture_shared: float = 0.55  # correlation between the T2 and the T1 texture field
    texture_pd_shared: float = 0.0  # correlation between the PD and the T1 texture field
    texture_t2_sd: float | None = 0.048  # the T2 field's relative SD (None: texture_sd)
    texture_pd_sd: float | None = 0.0  # the PD field's relative SD (None: texture_sd)
    texture_grey_gain: float = 2.0  # the T1 texture in grey-matter tissues (cortex, nuclei, cerebellar cortex) x this


@dataclass
class SimulatedSubject:
    t1: np.ndarray
    t2: np.ndarray
    codes: np.ndarray
    mask: np.ndarray
    affine: np.ndarray
    parameters: dict


def _protocol(rng: np.random.Generator, variation: Variation) -> tuple[MPRAGE, SpinEcho]:
    """This subject's T1w and T2w protocols."""
    return (
        MPRAGE(ti=float(rng.uniform(*variation.ti_range_ms)), flip_deg=float(rng.uniform(*variation.flip_range_deg))),
        SpinEcho(te=float(rng.uniform(*variation.te_range_ms))),
    )


def _sensitivities(sequence, tissues: list[T.Tissue], step: float = 1e-3) -> np.ndarray:
    """``(3, n_tissues)``: d ln(signal) / d ln(T1, T2, PD) per tissue, by central differences."""
    out = []
    for field in ("t1", "t2", "pd"):
        scaled = [
            [T.Tissue(**{**vars(t), field: getattr(t, field) * np.exp(sign * step)}) for t in tissues]
            for sign in (1, -1)
        ]
        up, down = (np.log(np.maximum(sequence.signal(ts), 1e-12)) for ts in scaled)
        out.append((up - down) / (2 * step))
    return np.asarray(out, np.float32)


#: Partial volume and texture as they were before the calibration to the HCP templates (issue 30): what the shipped
#: segmenter and pretrained model were trained with, and the reference of benchmarks simulate_realism and
#: reproduce_simulator.
UNCALIBRATED_TEXTURE = {
    "partial_volume_sharpness": 1.0,
    "texture_shared": 0.5,
    "texture_pd_shared": 0.0,
    "texture_t2_sd": None,
    "texture_pd_sd": None,
    "texture_grey_gain": 1.0,
}
#: Tissues whose texture ``texture_grey_gain`` scales.
GREY_TISSUES = ("gm", "deep_gm", "cerebellar_gm")


def _texture(rng: np.random.Generator, anatomy: Anatomy, variation: Variation) -> np.ndarray | None:
    """``(3, *grid)`` smooth relative variations of T1, T2 and PD (T2's partly shared with T1's)."""
    if not variation.texture_sd:
        return None
    extent = max(anatomy.codes.shape) * abs(anatomy.affine[0, 0])
    points = max(3, int(round(extent / variation.texture_spacing_mm)))
    t1, own, pd = (smooth_random_field(rng, anatomy.codes.shape, points) for _ in range(3))
    shared, pd_shared = variation.texture_shared, variation.texture_pd_shared
    t2 = shared * t1 + np.sqrt(1 - shared**2) * own
    pd = pd_shared * t1 + np.sqrt(1 - pd_shared**2) * pd
    sd = variation.texture_sd
    amplitudes = np.array(
        [
            sd,
            sd if variation.texture_t2_sd is None else variation.texture_t2_sd,
            sd if variation.texture_pd_sd is None else variation.texture_pd_sd,
        ],
        np.float32,
    )
    texture = amplitudes[:, None, None, None] * np.stack([t1, t2, pd])
    if variation.texture_grey_gain != 1.0:  # grey matter's T1 varies more (myelination differs across cortex)
        grey = np.isin(anatomy.tissue, [T.INDEX[name] for name in GREY_TISSUES])
        texture[0] *= np.where(grey, np.float32(variation.texture_grey_gain), np.float32(1.0))
    return texture


def _sharpened(fractions: np.ndarray, sharpness: float) -> np.ndarray:
    """Partial-volume fractions raised to ``sharpness`` and renormalized (1: as given).

    Only voxels with a fraction strictly between 0 and 1 change, so only they are computed (a thin band).
    """
    if sharpness == 1.0:
        return fractions
    partial = ((fractions > 0) & (fractions < 1)).any(axis=0)
    mixed = fractions[:, partial]
    powered = mixed**sharpness
    sharpened = fractions.copy()
    sharpened[:, partial] = powered * (mixed.sum(axis=0) / np.maximum(powered.sum(axis=0), 1e-12))
    return sharpened


def _signal_images(
    anatomy: Anatomy,
    values: dict[str, T.Tissue],
    variation: Variation,
    protocol: tuple = (MPRAGE(), SpinEcho()),
    texture: np.ndarray | None = None,
):
    """Noise-free T1w and T2w on the anatomy grid, with partial volume and within-tissue texture.

    The texture changes T1, T2 and PD voxel by voxel; its effect on each contrast is applied to
    first order, through each tissue's signal sensitivities (a per-voxel Bloch simulation of
    the MPRAGE would take minutes per subject).
    """
    tissue_list = list(values.values())  # the tissue table's order (and any tissues added after it)
    images = []
    if anatomy.fractions is not None:
        p_gm, p_wm, p_csf = _sharpened(anatomy.fractions, variation.partial_volume_sharpness)
        brain = (p_gm + p_wm + p_csf) > 0
    for sequence in protocol:
        per_tissue = sequence.signal(tissue_list).astype(np.float32)
        image = per_tissue[anatomy.tissue]
        if anatomy.fractions is not None:
            mixed = (
                p_gm * per_tissue[anatomy.gm_tissue]
                + p_wm * per_tissue[anatomy.wm_tissue]
                + p_csf * per_tissue[T.INDEX["csf"]]
            )
            image = np.where(brain, mixed, image)
        else:
            image = ndimage.gaussian_filter(image, variation.partial_volume_sigma_vox)
        if texture is not None:
            gains = _sensitivities(sequence, tissue_list)[:, anatomy.tissue]
            image = image * np.exp(np.einsum("k...,k...->...", gains, texture))
        images.append(image.astype(np.float32))
    return images


def _rotation(angles_deg) -> np.ndarray:
    a, b, c = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _sample_coordinates(anatomy: Anatomy, out_shape, out_affine, rng, variation: Variation):
    """Anatomy voxel coordinates for every output voxel: random affine + smooth displacement."""
    rotation = _rotation(rng.normal(0, variation.rotation_deg, 3))
    scales = np.exp(rng.normal(0, variation.scale_sd, 3))
    shift = rng.normal(0, variation.shift_mm, 3)
    centre = anatomy.affine[:3, :3] @ (np.array(anatomy.codes.shape) / 2) + anatomy.affine[:3, 3]
    control = max(3, int(round(max(out_shape) * abs(out_affine[0, 0]) / variation.deformation_spacing_mm)))
    # world (mm) -> anatomy (mm): x' = R S (x - c) + c + shift + displacement(x)
    linear = rotation @ np.diag(scales)
    to_voxel = np.linalg.inv(anatomy.affine)
    matrix = to_voxel[:3, :3] @ linear @ out_affine[:3, :3]
    offset = to_voxel[:3, :3] @ (linear @ (out_affine[:3, 3] - centre) + centre + shift) + to_voxel[:3, 3]
    grid = np.indices(out_shape, dtype=np.float32).reshape(3, -1)
    coordinates = (matrix.astype(np.float32) @ grid).reshape((3,) + tuple(out_shape))
    for axis in range(3):
        displacement = smooth_random_field(rng, out_shape, control) * variation.deformation_mm
        coordinates[axis] += offset[axis] + displacement / abs(anatomy.affine[axis, axis])
    return coordinates, {
        "rotation_deg": np.rad2deg(np.array(_angles(rotation))).tolist(),
        "scales": scales.tolist(),
        "shift_mm": shift.tolist(),
        "deformation_control_points": control,
    }


def _angles(rotation: np.ndarray):
    return (
        np.arctan2(rotation[2, 1], rotation[2, 2]),
        -np.arcsin(rotation[2, 0]),
        np.arctan2(rotation[1, 0], rotation[0, 0]),
    )


def simulate_subject(
    anatomy: Anatomy, seed: int, voxel_size: float = 1.0, variation: Variation = Variation()
) -> SimulatedSubject:
    """One synthetic subject from ``anatomy`` and ``seed`` (deterministic)."""
    rng = np.random.default_rng(seed)
    values = T.jittered(rng, variation.relaxation_sd)
    acquisition = np.random.default_rng([seed, 1])  # a second stream: the draws above and below stay as they were
    protocol = _protocol(acquisition, variation)
    texture = _texture(acquisition, anatomy, variation)
    t1_clean, t2_clean = _signal_images(anatomy, values, variation, protocol, texture)
    del texture

    extent = np.array(anatomy.codes.shape) * np.abs(np.diag(anatomy.affine)[:3])
    out_shape = tuple(int(n) for n in np.floor(extent / voxel_size))
    out_affine = np.diag([voxel_size] * 3 + [1.0])
    out_affine[:3, 3] = anatomy.affine[:3, 3]
    coordinates, geometry = _sample_coordinates(anatomy, out_shape, out_affine, rng, variation)
    codes = ndimage.map_coordinates(anatomy.codes, coordinates, order=0, mode="constant", cval=0)
    mask = ndimage.map_coordinates(anatomy.mask.astype(np.uint8), coordinates, order=0, mode="constant", cval=0)
    contrasts, noise = [], {}
    for name, clean in (("t1w", t1_clean), ("t2w", t2_clean)):
        image = ndimage.map_coordinates(clean, coordinates, order=1, mode="constant", cval=0.0)
        image *= bias_field(rng, out_shape, variation.bias_strength)
        reference = float(np.median(image[mask > 0]))
        snr = float(rng.uniform(*variation.snr_range))
        gain = float(rng.uniform(*variation.gain_range)) * 1000.0 / reference
        image = rician(rng, image * gain, gain * reference / snr)
        contrasts.append(image)
        noise[name] = {"snr": snr, "gain": gain, "noise_sd": gain * reference / snr}
    parameters = {
        "seed": seed,
        "anatomy": anatomy.name,
        "voxel_size_mm": voxel_size,
        "protocol": protocol_dict(*protocol),
        "tissues": {name: asdict(t) for name, t in values.items()},
        "geometry": geometry,
        "noise_and_gain": noise,
        "variation": asdict(variation),
        "mrsynth_version": __version__,
    }
    return SimulatedSubject(contrasts[0], contrasts[1], codes.astype(np.int32), mask, out_affine, parameters)
