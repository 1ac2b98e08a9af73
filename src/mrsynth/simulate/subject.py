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
    bias_strength: float = 0.12  # SD of log bias field
    snr_range: tuple[float, float] = (25.0, 45.0)  # brain-median signal / noise SD
    gain_range: tuple[float, float] = (0.7, 1.4)  # global intensity scale
    partial_volume_sigma_vox: float = 0.6  # smoothing of label boundaries (label maps)


@dataclass
class SimulatedSubject:
    t1: np.ndarray
    t2: np.ndarray
    codes: np.ndarray
    mask: np.ndarray
    affine: np.ndarray
    parameters: dict


def _signal_images(anatomy: Anatomy, values: dict[str, T.Tissue], variation: Variation):
    """Noise-free T1w and T2w on the anatomy grid, with partial volume."""
    tissue_list = [values[name] for name in T.NAMES]
    images = []
    for sequence in (MPRAGE(), SpinEcho()):
        per_tissue = sequence.signal(tissue_list).astype(np.float32)
        image = per_tissue[anatomy.tissue]
        if anatomy.fractions is not None:
            p_gm, p_wm, p_csf = anatomy.fractions
            brain = (p_gm + p_wm + p_csf) > 0
            mixed = (p_gm * per_tissue[anatomy.gm_tissue] + p_wm * per_tissue[anatomy.wm_tissue]
                     + p_csf * per_tissue[T.INDEX["csf"]])
            image = np.where(brain, mixed, image)
        else:
            image = ndimage.gaussian_filter(image, variation.partial_volume_sigma_vox)
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
    return (np.arctan2(rotation[2, 1], rotation[2, 2]), -np.arcsin(rotation[2, 0]),
            np.arctan2(rotation[1, 0], rotation[0, 0]))


def simulate_subject(anatomy: Anatomy, seed: int, voxel_size: float = 1.0,
                     variation: Variation = Variation()) -> SimulatedSubject:
    """One synthetic subject from ``anatomy`` and ``seed`` (deterministic)."""
    rng = np.random.default_rng(seed)
    values = T.jittered(rng, variation.relaxation_sd)
    t1_clean, t2_clean = _signal_images(anatomy, values, variation)

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
        "protocol": protocol_dict(),
        "tissues": {name: asdict(t) for name, t in values.items()},
        "geometry": geometry,
        "noise_and_gain": noise,
        "variation": asdict(variation),
        "mrsynth_version": __version__,
    }
    return SimulatedSubject(contrasts[0], contrasts[1], codes.astype(np.int32), mask, out_affine, parameters)
