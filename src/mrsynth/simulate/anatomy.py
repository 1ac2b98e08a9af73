"""Anatomies to simulate from: the package-shipped MNI152 template, or FreeSurfer label maps.

An :class:`Anatomy` is, on one 1 mm grid: the FreeSurfer codes to write as ``wmparc``,
a simulated tissue per voxel (:mod:`.tissues`), and optionally partial-volume fractions
of grey matter, white matter and CSF inside the brain.

Default anatomy (nothing but pip): nilearn's wheel ships the ICBM 2009a symmetric MNI152
template (T1 and GM/WM probability maps, 1 mm, skull-stripped).  From it:

* brain: the template's non-zero T1 voxels; inside it the GM/WM probability maps give the
  fractions, and CSF is the remainder.
* each brain voxel's label is its most probable tissue, then refined by region, in MNI
  coordinates (mm) and depth below the brain surface:
  - cerebellum: below the tentorium, ``y < -40`` and ``z < -8 - 0.25 |x| + 0.35 min(0, y + 55)``;
  - brain stem: ``|x| < 13``, ``-45 < y < -12``, ``z < -8``, outside the cerebellum;
  - subcortical nuclei: grey matter deeper than 12 mm inside ``|x| < 34``,
    ``-38 < y < 26``, ``-24 < z < 22`` (thalamus behind ``y = -6``, striatum in front);
  - ventricles: CSF deeper than 8 mm (3rd ventricle within 3 mm of the midline);
  - everything else: cortex (3/42), cerebral white matter (2/41) or sulcal CSF (24).
* a head around the brain, as shells at a distance ``d`` (mm) from the brain: extra-cerebral
  CSF ``d <= 2``, with the superior sagittal sinus (vessel, 30) where it touches the
  midline above ``z = 10``; skull ``2 < d <= 8`` (165); scalp fat ``8 < d <= 12`` and
  skin/muscle ``12 < d <= 15`` (both 258, Head-ExtraCerebral).  Outside: air (0).

Label-map anatomy (``--labels``): any FreeSurfer aseg/wmparc map; its codes decide the
tissue (SynthSeg's undocumented 500s as in :data:`.tissues.SYNTHSEG_EXTRA`), partial
volume comes from smoothing the label boundaries; its brain mask follows HCP's ``brainmask_fs`` rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from ..errors import InputError
from ..io.nifti import NIFTI_SUFFIXES, read_volume
from ..labels import hcp_brain_mask
from . import tissues as T

HEAD_CODES = (0, 165, 258, 259, 126)  # outside the brain mask
CSF_CODE, EXTRA_CEREBRAL_HEAD = 24, 258  # FreeSurfer's CSF; what the CSF outside the brain mask becomes
TEMPLATE_FILES = {name: f"mni_icbm152_{name}_tal_nlin_sym_09a_converted.nii.gz" for name in ("t1", "gm", "wm")}


@dataclass
class Anatomy:
    name: str
    codes: np.ndarray  # int32 FreeSurfer codes to write
    tissue: np.ndarray  # uint8 index into tissues.NAMES (crisp tissue per voxel)
    affine: np.ndarray  # 1 mm, RAS
    mask: np.ndarray  # bool brain mask (brain tissue and the CSF around it)
    fractions: np.ndarray | None = None  # float32 (3, ...) GM/WM/CSF inside the brain
    gm_tissue: np.ndarray | None = None  # uint8 tissue of the GM fraction per voxel
    wm_tissue: np.ndarray | None = None  # uint8 tissue of the WM fraction per voxel


def _template_path(name: str) -> Path:
    try:
        base = resources.files("nilearn") / "datasets" / "data"
    except ModuleNotFoundError as error:  # pragma: no cover - nilearn is a dependency
        raise InputError("the default anatomy needs the nilearn package (pip install nilearn)") from error
    return Path(str(base / TEMPLATE_FILES[name]))


def _mm_grid(shape, affine):
    """World coordinates (mm) of every voxel of a RAS grid with a diagonal affine."""
    axes = [affine[i, i] * np.arange(n) + affine[i, 3] for i, n in enumerate(shape)]
    return np.meshgrid(*axes, indexing="ij", sparse=True)


def default_anatomy() -> Anatomy:
    """The MNI152 2009a template turned into a labelled head (see the module docstring)."""
    images = {name: nib.load(str(_template_path(name))) for name in TEMPLATE_FILES}
    affine = images["t1"].affine
    t1 = np.asarray(images["t1"].dataobj, dtype=np.float32)
    p_gm = np.asarray(images["gm"].dataobj, dtype=np.float32) / 255.0
    p_wm = np.asarray(images["wm"].dataobj, dtype=np.float32) / 255.0
    brain = ndimage.binary_fill_holes(t1 > 0)
    p_gm *= brain
    p_wm *= brain
    p_csf = np.clip(1.0 - p_gm - p_wm, 0.0, 1.0) * brain
    x, y, z = _mm_grid(t1.shape, affine)
    depth = ndimage.distance_transform_edt(brain)
    outside = ndimage.distance_transform_edt(~brain)

    dominant = np.argmax(np.stack([p_gm, p_wm, p_csf]), axis=0)
    left = np.broadcast_to(x < 0, t1.shape)
    codes = np.zeros(t1.shape, np.int32)
    codes[brain] = np.select([dominant == 0, dominant == 1], [np.where(left, 3, 42), np.where(left, 2, 41)], 24)[brain]
    cerebellum = brain & (y < -40) & (z < -8 - 0.25 * np.abs(x) + 0.35 * np.minimum(0, y + 55))
    stem = brain & (np.abs(x) < 13) & (y > -45) & (y < -12) & (z < -8) & ~cerebellum
    deep_box = (np.abs(x) < 34) & (y > -38) & (y < 26) & (z > -24) & (z < 22)
    nuclei = brain & (dominant == 0) & (depth > 12) & deep_box & ~stem
    ventricles = brain & (dominant == 2) & (depth > 8) & ~cerebellum
    codes[brain & (dominant == 2) & (depth <= 3)] = 0
    codes[nuclei] = np.where(y < -6, np.where(left, 10, 49), np.where(left, 11, 50))[nuclei]
    codes[ventricles] = np.where(np.abs(x) < 3, 14, np.where(left, 4, 43))[ventricles]
    codes[ventricles & (stem | (y < -35))] = 15
    codes[cerebellum & (dominant == 0)] = np.where(left, 8, 47)[cerebellum & (dominant == 0)]
    codes[cerebellum & (dominant == 1)] = np.where(left, 7, 46)[cerebellum & (dominant == 1)]
    codes[stem & (dominant != 2)] = 16

    shell = ~brain
    rim = shell & (outside <= 2)
    codes[rim] = 0  # outside the pial surface: FreeSurfer's "Unknown", yet inside the brain mask
    codes[rim & (np.abs(x) < 2.5) & (z > 10)] = 30
    codes[shell & (outside > 2) & (outside <= 8)] = 165
    codes[shell & (outside > 8) & (outside <= 15)] = 258
    tissue = _tissue_lut(codes)
    tissue[rim & (codes == 0)] = T.INDEX["csf"]
    tissue[shell & (outside > 8) & (outside <= 12)] = T.INDEX["fat"]
    mask = brain | rim

    gm_tissue = np.full(t1.shape, T.INDEX["gm"], np.uint8)
    wm_tissue = np.full(t1.shape, T.INDEX["wm"], np.uint8)
    gm_tissue[nuclei] = wm_tissue[nuclei] = T.INDEX["deep_gm"]
    gm_tissue[cerebellum] = T.INDEX["cerebellar_gm"]
    wm_tissue[cerebellum] = T.INDEX["cerebellar_wm"]
    gm_tissue[stem] = wm_tissue[stem] = T.INDEX["brainstem"]
    fractions = np.stack([p_gm, p_wm, p_csf]).astype(np.float32)
    return Anatomy("mni152-2009a", codes, tissue, affine, mask, fractions, gm_tissue, wm_tissue)


def _tissue_lut(codes: np.ndarray) -> np.ndarray:
    values, inverse = np.unique(codes, return_inverse=True)
    lut = np.array([T.INDEX[T.tissue_of_code(int(v))] for v in values], np.uint8)
    return lut[inverse.reshape(codes.shape)]


#: A label map holds a few hundred codes at most (FreeSurfer's wmparc about 180, SynthSeg's maps about 100); an
#: intensity image stored as integers holds thousands of values.
MAX_LABEL_CODES = 1000
#: Codes every brain label map has: cerebral white matter and cortex, left or right.
CEREBRAL_CODES = {2, 3, 41, 42}
#: A label map is piecewise constant: most neighbours (along the first axis, outside the background) share a code
#: (0.83-0.87 in SynthSeg's maps and HCP's wmparc); an image's intensities rarely repeat (0.07-0.10 for T1w scans
#: stored as 8-bit integers).
MIN_NEIGHBOUR_AGREEMENT = 0.5


def read_label_map(path: Path) -> tuple[np.ndarray, nib.Nifti1Image]:
    """A FreeSurfer label map's codes and image, refused with the file and the problem where it is unreadable, not
    integer-valued, not at 1 mm, or not a label map at all (too many distinct values, no cerebral tissue)."""
    data, image = read_volume(Path(path))
    if not np.all(np.abs(data - np.rint(data)) < 1e-3):
        raise InputError("label map has non-integer values", path)
    zooms = np.asarray(image.header.get_zooms()[:3])
    if np.abs(zooms - 1.0).max() > 0.05:
        raise InputError(f"label maps must have 1 mm voxels, got {tuple(zooms)}", path)
    codes = np.unique(np.rint(data).astype(np.int64))
    if len(codes) > MAX_LABEL_CODES:
        raise InputError(f"{len(codes)} distinct values: an intensity image, not a label map of FreeSurfer codes", path)
    if not CEREBRAL_CODES & set(codes.tolist()):
        raise InputError("no cerebral white matter or cortex code (2, 3, 41, 42): not a FreeSurfer label map", path)
    agreement = _neighbour_agreement(np.rint(data))
    if agreement < MIN_NEIGHBOUR_AGREEMENT:
        raise InputError(
            f"only {agreement:.0%} of neighbouring voxels share a value: an intensity image, not a label map", path
        )
    return data, image


def _neighbour_agreement(codes: np.ndarray) -> float:
    """The share of pairs of neighbours along the first axis, not both background, that hold the same code."""
    inside = (codes[1:] != 0) | (codes[:-1] != 0)
    return float((codes[1:] == codes[:-1])[inside].mean()) if inside.any() else 1.0


def check_label_maps(paths) -> None:
    """Every label map readable and plausible (:func:`read_label_map`), before a run that draws from them starts."""
    for path in paths:
        read_label_map(Path(path))


def label_map_anatomy(path: Path) -> Anatomy:
    """A FreeSurfer label map as an anatomy: reoriented to RAS, cropped to the head."""
    data, image = read_label_map(path)
    canonical = nib.as_closest_canonical(nib.Nifti1Image(np.rint(data).astype(np.int32), image.affine))
    labels = np.asarray(canonical.dataobj, dtype=np.int32)
    occupied = np.argwhere(labels > 0)
    if not len(occupied):
        raise InputError("label map is empty", path)
    low = np.maximum(occupied.min(0) - 4, 0)
    high = np.minimum(occupied.max(0) + 5, labels.shape)
    labels = labels[low[0] : high[0], low[1] : high[1], low[2] : high[2]]
    affine = canonical.affine.copy()
    affine[:3, 3] = canonical.affine[:3, :3] @ low + canonical.affine[:3, 3]
    written = np.vectorize(T.written_code, otypes=[np.int32])
    values, inverse = np.unique(labels, return_inverse=True)
    codes = written(values)[inverse.reshape(labels.shape)]
    tissue = np.array([T.INDEX[T.tissue_of_code(int(v))] for v in values], np.uint8)[inverse.reshape(labels.shape)]
    mask, codes = _hcp_brain_mask(codes)
    return Anatomy(path.name.split(".")[0], codes.astype(np.int32), tissue, affine, mask)


def _hcp_brain_mask(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A label map's brain mask as HCP makes ``brainmask_fs`` (:func:`~mrsynth.labels.hcp_brain_mask` of its
    brain labels but CSF), within its non-head tissue, and its codes with the CSF left outside that mask
    written as head tissue (Head-ExtraCerebral: FreeSurfer labels no CSF beyond the pial surface, SynthSeg's
    maps do, up to the skull)."""
    non_head = ndimage.binary_fill_holes(~np.isin(codes, HEAD_CODES))
    mask = hcp_brain_mask(non_head & (codes != CSF_CODE), (1.0, 1.0, 1.0)) & non_head
    return mask, np.where(non_head & ~mask & (codes == CSF_CODE), EXTRA_CEREBRAL_HEAD, codes)


def label_map_paths(path: str | Path) -> list[Path]:
    """The label maps in ``path`` (a file, or every NIfTI in a folder, sorted)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        maps = sorted(p for p in path.iterdir() if p.name.endswith(NIFTI_SUFFIXES))
        if maps:
            return maps
        raise InputError("no NIfTI label maps in this folder", path)
    raise InputError("label map path does not exist", path)
