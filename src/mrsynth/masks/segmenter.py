"""A learned brain and tissue segmenter for a bare T1w: the ``learned`` method of :mod:`mrsynth.masks`.

A small 2D U-Net (the ``unet`` kind with one output per class) labels every voxel with one of eight classes:
outside the brain, or one of the paper's seven exclusive tissue classes (``labels.CLASSES[1:]``).  It was trained
by its recipe (``mrsynth pretrain --recipe segmenter``, :mod:`mrsynth.training.segmenter_recipe`) on T1w images
simulated from SynthSeg's label maps (held-out maps are scored in ``benchmarks/studies/masks.py``), with random
pose, protocol, bias, noise, blur and skull stripping, so it expects nothing of the input's site or scaling.

It is a model like any other (``mrsynth.networks.load_model("segmenter")``, weights shipped in
``assets/segmenter``, no download), and its input contract says how it reads a T1w: resampled (trilinear) onto a
right-anterior-superior grid of 1.4 mm voxels that covers the input, normalized there by its foreground's 99th
percentile, segmented axial slice by axial slice (each with one neighbour on either side), the four in-plane flips
averaged.  The class probabilities are resampled back onto the input grid (trilinear) before the most probable
class is taken, so any orientation and voxel size works.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from scipy import ndimage

from .. import labels
from ..errors import InputError
from ..logs import bar, log
from ..networks import SEGMENTER, ModelInfo, class_probabilities, load_model
from ..networks.grids import voxel_coordinates
from ..networks.inputs import onto_work_grid, resample_inputs
from .common import STRIPPED, WHOLE_HEAD, AutoMasks, contrast_warnings, looks_skull_stripped, warn

METHOD = "learned"  # the method's name in records
#: Output classes: 0 outside the brain, then the seven exclusive tissue classes in ``labels.CLASSES`` order.
OUTPUTS = ("outside",) + labels.CLASSES[1:]
#: The FreeSurfer code written for each tissue class (a representative code: the segmenter knows no parcels).
CLASS_CODES = {
    "grey_matter": 3,
    "white_matter": 2,
    "csf": 24,
    "subcortical": 10,
    "vessel": 30,
    "cerebellum": 8,
    "unknown": 0,
}
WORK_MM = 1.4
#: In-plane flips whose probabilities ``segment`` averages (the spec's): 4x the network's time.  Measured against
#: the image as given alone, on the 4 held-out simulated heads (mean Dice of 8 classes) and the ICBM head's brain
#: (``python -m benchmarks compare_segmenters``): weights version 3, 0.820 -> 0.838 and 0.966 -> 0.968; version 1
#: (before the brain followed HCP's mask rule), 0.785 -> 0.788 and 0.837 -> 0.924.
FLIPS = ((), (0,), (1,), (0, 1))


def class_target(codes: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """Training labels: 0 outside ``brain``, else the index in ``OUTPUTS`` of each voxel's tissue class."""
    bits, _ = labels.tissue_bits(codes, brain)
    return np.where(brain, labels.exclusive_class(bits), 0).astype(np.uint8)


def probabilities(model: torch.nn.Module, info: ModelInfo, volume: np.ndarray, progress=None, flips=None) -> np.ndarray:
    """Class probabilities ``(len(OUTPUTS), *volume.shape)`` of a work-grid volume (x, y, axial), slice by slice,
    normalized as the spec says and averaged over its in-plane flips (or ``flips``: ``()`` as given, ``(0,)``
    left-right, ``(1,)`` front-back, ``(0, 1)`` both)."""
    spec = info.spec if flips is None else replace(info.spec, flips=flips)
    transform = spec.normalization.transform_volume("t1", volume)
    slices = np.moveaxis(volume, 2, 0)
    out = class_probabilities(model, replace(info, spec=spec), slices, transform, batch_size=16)
    if progress is not None:
        progress(volume.shape[2])
    return np.ascontiguousarray(np.moveaxis(out, (0, 1), (3, 0)))


@dataclass
class Segmentation:
    brain: np.ndarray  # bool, on the input grid
    classes: np.ndarray  # uint8 index in OUTPUTS (0 outside the brain), on the input grid
    confidence: float  # mean probability of the chosen class inside the brain (work grid)
    inverted_confidence: float  # the same for the input with its intensities inverted (see looks_inverted)

    @property
    def looks_inverted(self) -> bool:
        """The network is surer of itself on the inverted image: the input's contrast is more like a T2w's.

        (The labels themselves cannot tell: the network calls bright tissue white matter whatever the
        contrast.)  Measured (weights version 3): HCP and ICBM T2w templates 0.59-0.67 as given against
        0.84-0.85 inverted; the T1w templates 0.83-0.84 against 0.66-0.71."""
        return self.inverted_confidence > self.confidence


def confidence(probs: np.ndarray) -> float:
    """Mean probability of the most probable class over the voxels called brain (0 if none)."""
    brain = probs[0] < 0.5
    return float(probs.max(axis=0)[brain].mean()) if brain.any() else 0.0


def inverted(volume: np.ndarray) -> np.ndarray:
    """The foreground's intensities turned upside down (dark becomes bright), background left at 0."""
    foreground = volume > volume.mean()
    top = float(np.percentile(volume[foreground], 99)) if foreground.any() else 0.0
    return np.where(foreground, np.clip(1.1 * top - volume, 0, None), 0).astype(np.float32)


def segment(
    t1: np.ndarray,
    affine: np.ndarray,
    segmenter: tuple[torch.nn.Module, ModelInfo] | None = None,
    chunk: int = 32,
    flips: tuple[tuple[int, ...], ...] | None = None,
    source=None,
) -> Segmentation:
    """Brain mask and exclusive classes on the input grid, and how sure the network is of them (as given and
    inverted; the probabilities as given averaged over the spec's flips, or ``flips``).  ``segmenter``: a loaded
    model (default the shipped one).  The brain follows HCP's mask rule (:func:`brain_mask`); voxels it takes in
    that the network called outside get the nearest tissue class."""
    model, info = segmenter or load_model(SEGMENTER)
    grid = onto_work_grid(info.spec, affine, t1.shape, source)
    work = resample_inputs(grid, affine, t1)["t1"]
    with bar(total=2 * work.shape[2], desc="segment", unit="slice", leave=False) as progress:
        probs = probabilities(model, info, work, progress=progress.update, flips=flips)
        sure = confidence(probs)
        sure_inverted = confidence(probabilities(model, info, inverted(work), progress.update, flips=((),)))
    classes = np.zeros(t1.shape, np.uint8)
    for start in range(0, t1.shape[2], chunk):  # back onto the input grid, a slab at a time (bounded memory)
        z = range(start, min(start + chunk, t1.shape[2]))
        coordinates = voxel_coordinates(t1.shape, affine, grid.affine, z)
        slab_best = np.full(coordinates.shape[1:], -1.0, np.float32)
        slab_class = np.zeros(coordinates.shape[1:], np.uint8)
        for index in range(len(OUTPUTS)):
            p = ndimage.map_coordinates(
                probs[index], coordinates, order=1, mode="constant", cval=1.0 if index == 0 else 0.0
            )
            better = p > slab_best
            slab_best[better], slab_class[better] = p[better], index
        classes[:, :, z.start : z.stop] = slab_class
    brain = brain_mask(classes, np.linalg.norm(affine[:3, :3], axis=0))
    filled = brain & (classes == 0)
    if filled.any():  # holes the network called outside: the nearest tissue class
        _, nearest = ndimage.distance_transform_edt(classes == 0, return_indices=True)
        classes[filled] = classes[tuple(axis[filled] for axis in nearest)]
    return Segmentation(brain, np.where(brain, classes, 0).astype(np.uint8), sure, sure_inverted)


def brain_mask(classes: np.ndarray, zooms) -> np.ndarray:
    """The brain as HCP's ``brainmask_fs`` would be made from these classes (:func:`labels.hcp_brain_mask` of
    the largest connected tissue that is not CSF): the extra-cerebral CSF left out, as FreeSurfer leaves it
    unlabelled.  Weights since version 3 were trained on brains made by this rule; version 2's training maps
    labelled CSF up to the skull, and the rule took its brain Dice against the ICBM head's own mask from 0.932
    to 0.967 (benchmarks/RESULTS.md, masks, as of commit 73797eb)."""
    tissue = _largest_part(classes > 0) & (classes != OUTPUTS.index("csf"))
    return labels.hcp_brain_mask(tissue, zooms)


def _largest_part(mask: np.ndarray) -> np.ndarray:
    parts, count = ndimage.label(mask)
    if count <= 1:
        return mask
    sizes = np.bincount(parts.ravel())
    sizes[0] = 0
    return parts == int(np.argmax(sizes))


def version(info: ModelInfo) -> int:
    """The recipe version of a segmenter's weights (what a masks record names)."""
    return int(info.training.get("pretraining", {}).get("recipe_version", 0))


def class_codes(classes: np.ndarray) -> np.ndarray:
    """FreeSurfer codes (``CLASS_CODES``) for an exclusive class volume (0 outside the brain)."""
    table = np.zeros(len(OUTPUTS), np.int32)
    for index, name in enumerate(OUTPUTS[1:], start=1):
        table[index] = CLASS_CODES[name]
    return table[classes]


def contrast_check(t1: np.ndarray, affine: np.ndarray, source, segmenter=None) -> tuple[list[str], dict]:
    """The contrast check of a T1w that comes with its own brain mask, the one the learned masks make: a warning
    when the segmenter is surer of the image with its intensities inverted (a T2w given as the T1w), from one
    pass as given and one inverted (no flips: a few seconds); with the two confidences (a report shows them)."""
    model, info = segmenter or load_model(SEGMENTER)
    work = resample_inputs(onto_work_grid(info.spec, affine, t1.shape, source), affine, t1)["t1"]
    sure = confidence(probabilities(model, info, work, flips=((),)))
    sure_inverted = confidence(probabilities(model, info, inverted(work), flips=((),)))
    record = {"confidence": round(sure, 3), "inverted_confidence": round(sure_inverted, 3)}
    return ([_looks_inverted(source, sure, sure_inverted)] if sure_inverted > sure else []), record


def _looks_inverted(source, sure: float, sure_inverted: float) -> str:
    return warn(
        f"{source}: the segmenter is surer of this image with its intensities inverted (confidence "
        f"{sure_inverted:.2f} against {sure:.2f}): is this a T2w rather than a T1w? It is read as a T1w"
    )


def learned_masks(t1: np.ndarray, affine: np.ndarray, source) -> AutoMasks:
    """The ``learned`` method: this segmenter, no registration, no extra dependency."""
    stripped = looks_skull_stripped(t1, affine)
    log.info("%s: segmenting with the learned segmenter (%s input)", source, STRIPPED if stripped else WHOLE_HEAD)
    model, info = load_model(SEGMENTER)
    result = segment(t1, affine, (model, info), source=source)
    brain = result.brain & (t1 > 0) if stripped else result.brain
    if not brain.any():
        raise InputError("the segmented brain mask is empty: is this a T1w of a head?", source)
    seg = np.where(brain, class_codes(result.classes), 0).astype(np.int32)
    record = {
        "method": METHOD,
        "version": version(info),
        "weights_sha256": info.weights_sha256,
        "input": STRIPPED if stripped else WHOLE_HEAD,
        "confidence": round(result.confidence, 3),
        "inverted_confidence": round(result.inverted_confidence, 3),
    }
    notes = [_looks_inverted(source, result.confidence, result.inverted_confidence)] if result.looks_inverted else []
    return AutoMasks(brain, seg, record, notes or contrast_warnings(t1, seg, brain, source))
