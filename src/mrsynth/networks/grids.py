"""Grids other than a volume's own: an axis-aligned RAS grid of isotropic voxels covering it, where a network
works whatever the input's orientation and voxel size, and resampling between the two."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class WorkGrid:
    """An axis-aligned RAS grid of isotropic voxels covering an input volume."""

    shape: tuple[int, int, int]
    affine: np.ndarray


def work_grid(shape, affine: np.ndarray, mm: float) -> WorkGrid:
    """The RAS grid of ``mm`` voxels whose box holds every voxel centre of a volume of ``shape`` on ``affine``."""
    corners = np.array(np.meshgrid(*[(0, n - 1) for n in shape], indexing="ij")).reshape(3, -1)
    world = affine[:3, :3] @ corners + affine[:3, 3:4]
    low, high = world.min(axis=1), world.max(axis=1)
    out_shape = tuple(int(n) for n in np.ceil((high - low) / mm - 1e-6) + 1)
    out = np.diag([mm] * 3 + [1.0])
    out[:3, 3] = low
    return WorkGrid(out_shape, out)


def voxel_coordinates(from_shape, from_affine: np.ndarray, to_affine: np.ndarray, z_range=None) -> np.ndarray:
    """For every voxel of the ``from`` grid (slices ``z_range`` of its last axis), its coordinates in the ``to``
    grid's voxels: ``(3, *shape)`` float32."""
    matrix = np.linalg.inv(to_affine) @ from_affine
    z = range(from_shape[2]) if z_range is None else z_range
    grid = np.stack(np.meshgrid(np.arange(from_shape[0]), np.arange(from_shape[1]), np.asarray(z), indexing="ij"))
    shape = grid.shape[1:]
    out = matrix[:3, :3].astype(np.float32) @ grid.reshape(3, -1).astype(np.float32)
    return (out + matrix[:3, 3:4].astype(np.float32)).reshape((3,) + shape)


def resample_onto(
    volume: np.ndarray, affine: np.ndarray, shape, to_affine: np.ndarray, order: int = 1, chunk: int = 32
) -> np.ndarray:
    """``volume`` (on ``affine``) resampled onto the grid ``shape``/``to_affine``, 0 outside; a slab of ``chunk``
    slices at a time, so that memory stays bounded."""
    volume = np.asarray(volume, np.float32)
    out = np.empty(tuple(shape), np.float32)
    for start in range(0, shape[2], chunk):
        z = range(start, min(start + chunk, shape[2]))
        coordinates = voxel_coordinates(shape, to_affine, affine, z)
        out[:, :, z.start : z.stop] = ndimage.map_coordinates(volume, coordinates, order=order, mode="constant")
    return out


def footprint_offsets(to_affine: np.ndarray, spacing: float) -> list[np.ndarray]:
    """Where, inside a voxel of the grid ``to_affine`` (in its own voxel units), to sample a volume of ``spacing`` mm
    voxels so that the mean of the samples is the voxel's average: along each axis, as many evenly spaced points as
    the voxel holds source voxels (one for a voxel no larger than the source's)."""
    sizes = np.linalg.norm(np.asarray(to_affine)[:3, :3], axis=0)
    counts = [max(1, int(round(size / spacing))) for size in sizes]
    steps = [(np.arange(n) + 0.5) / n - 0.5 for n in counts]
    return [np.array(point) for point in np.stack(np.meshgrid(*steps, indexing="ij"), -1).reshape(-1, 3)]


def average_onto(volume: np.ndarray, affine: np.ndarray, shape, to_affine: np.ndarray, spacing: float) -> np.ndarray:
    """``volume`` (on ``affine``, voxels of ``spacing`` mm) brought onto the grid ``shape``/``to_affine`` as each of
    its voxels would acquire it: the average over the voxel's footprint (:func:`footprint_offsets`), not the value at
    its centre.  A voxel no larger than the source's is the trilinear value at its centre, as :func:`resample_onto`."""
    out = np.zeros(tuple(shape), np.float32)
    offsets = footprint_offsets(to_affine, spacing)
    for offset in offsets:
        shifted = np.array(to_affine, dtype=float)
        shifted[:3, 3] += shifted[:3, :3] @ offset
        out += resample_onto(volume, affine, shape, shifted)
    return out / np.float32(len(offsets)) if len(offsets) > 1 else out
