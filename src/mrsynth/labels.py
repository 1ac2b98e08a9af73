"""FreeSurfer label codes -> the paper's eight tissue classes.

The paper (section 3) aggregates the HCP brain mask and the FreeSurfer ``wmparc``
segmentation into eight label sets: brain, grey matter, white matter, CSF,
subcortical structure, vessel, cerebellum and unknown.  Each set becomes one
binary input channel coded -1/+1.

``brain`` comes from the brain mask and lies on top of the others (a voxel can be
brain *and* grey matter).  Every voxel gets exactly one of the seven other classes
from its segmentation code, using the table below; codes the table does not know
go to ``unknown`` and are reported (see :func:`unknown_codes`).

On disk and in memory the classes are one ``uint8`` bit field per voxel
(bit ``i`` = ``CLASSES[i]``); they are expanded to float -1/+1 channels only when
a batch is built (:func:`expand_bits`).

The class choices that are not obvious, and why:

* hippocampus, amygdala, thalamus, caudate, putamen, pallidum, accumbens,
  ventral DC, substantia nigra, claustrum, FreeSurfer's "subcortical grey matter"
  (163/164) and brain stem are ``subcortical``: these are the
  subcortical grey structures of FreeSurfer's aseg (and the HCP CIFTI subcortical
  set), with T1/T2 values between cortex and white matter.
* corpus callosum (86, 251-255), fornix, internal capsule, optic chiasm (85) and
  WM hypointensities (77-79, which lie in white matter) are ``white matter``.
* choroid plexus (31/63) is ``CSF``: it floats in the ventricles and at HCP
  resolution is mostly partial-volumed with ventricular CSF.  Extra-cerebral CSF
  (257) is CSF too.
* non-WM hypointensities (80-82), lesions (25/57/99) and "undetermined" (29/61)
  carry no reliable tissue type: ``unknown``.
* skull, scalp, dura, eyes, air, sinus and other head tissue are ``unknown``, like the
  background (code 0): non-brain tissue, as in the HCP images.
* cortical parcels of every FreeSurfer atlas (1000-2999 and the a2009s
  11100-12999) are grey matter; white-matter parcels (3000-4999, 13100-14999) and
  the unsegmented white matter 5001/5002 are white matter.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy import ndimage

#: Version of the table below; stored with every prepared subject and model so a
#: change of the table invalidates caches built with an older one.
TABLE_VERSION = 2

#: The paper's eight classes, in channel order (bit i of the stored field).
CLASSES: tuple[str, ...] = (
    "brain",
    "grey_matter",
    "white_matter",
    "csf",
    "subcortical",
    "vessel",
    "cerebellum",
    "unknown",
)
BIT = {name: i for i, name in enumerate(CLASSES)}
#: Segmentations whose codes span less than this are encoded through a table indexed by code.
DENSE_CODE_RANGE = 1 << 20

#: Explicit aseg codes -> (class, FreeSurferColorLUT name).
ASEG_CLASSES: dict[int, tuple[str, str]] = {
    0: ("unknown", "Unknown (background)"),
    2: ("white_matter", "Left-Cerebral-White-Matter"),
    41: ("white_matter", "Right-Cerebral-White-Matter"),
    3: ("grey_matter", "Left-Cerebral-Cortex"),
    42: ("grey_matter", "Right-Cerebral-Cortex"),
    19: ("grey_matter", "Left-Insula (old aseg)"),
    55: ("grey_matter", "Right-Insula (old aseg)"),
    20: ("grey_matter", "Left-Operculum (old aseg)"),
    56: ("grey_matter", "Right-Operculum (old aseg)"),
    4: ("csf", "Left-Lateral-Ventricle"),
    43: ("csf", "Right-Lateral-Ventricle"),
    5: ("csf", "Left-Inf-Lat-Vent"),
    44: ("csf", "Right-Inf-Lat-Vent"),
    14: ("csf", "3rd-Ventricle"),
    15: ("csf", "4th-Ventricle"),
    72: ("csf", "5th-Ventricle"),
    24: ("csf", "CSF"),
    31: ("csf", "Left-choroid-plexus"),
    63: ("csf", "Right-choroid-plexus"),
    257: ("csf", "CSF-ExtraCerebral"),
    75: ("csf", "Left-Lateral-Ventricles"),
    76: ("csf", "Right-Lateral-Ventricles"),
    122: ("csf", "CSF-SA"),
    6: ("cerebellum", "Left-Cerebellum-Exterior (old aseg)"),
    45: ("cerebellum", "Right-Cerebellum-Exterior (old aseg)"),
    7: ("cerebellum", "Left-Cerebellum-White-Matter"),
    46: ("cerebellum", "Right-Cerebellum-White-Matter"),
    8: ("cerebellum", "Left-Cerebellum-Cortex"),
    47: ("cerebellum", "Right-Cerebellum-Cortex"),
    172: ("cerebellum", "Vermis"),
    9: ("subcortical", "Left-Thalamus (unused)"),
    48: ("subcortical", "Right-Thalamus (unused)"),
    10: ("subcortical", "Left-Thalamus"),
    49: ("subcortical", "Right-Thalamus"),
    11: ("subcortical", "Left-Caudate"),
    50: ("subcortical", "Right-Caudate"),
    12: ("subcortical", "Left-Putamen"),
    51: ("subcortical", "Right-Putamen"),
    13: ("subcortical", "Left-Pallidum"),
    52: ("subcortical", "Right-Pallidum"),
    17: ("subcortical", "Left-Hippocampus"),
    53: ("subcortical", "Right-Hippocampus"),
    18: ("subcortical", "Left-Amygdala"),
    54: ("subcortical", "Right-Amygdala"),
    26: ("subcortical", "Left-Accumbens-area"),
    58: ("subcortical", "Right-Accumbens-area"),
    27: ("subcortical", "Left-Substancia-Nigra"),
    59: ("subcortical", "Right-Substancia-Nigra"),
    28: ("subcortical", "Left-VentralDC"),
    60: ("subcortical", "Right-VentralDC"),
    16: ("subcortical", "Brain-Stem"),
    174: ("subcortical", "Pons"),
    136: ("subcortical", "Left-Caudate/Putamen"),
    137: ("subcortical", "Right-Caudate/Putamen"),
    138: ("subcortical", "Left-Claustrum"),
    139: ("subcortical", "Right-Claustrum"),
    163: ("subcortical", "Left-Subcortical-Gray-Matter"),
    164: ("subcortical", "Right-Subcortical-Gray-Matter"),
    126: ("subcortical", "Spinal-Cord"),
    30: ("vessel", "Left-vessel"),
    62: ("vessel", "Right-vessel"),
    77: ("white_matter", "WM-hypointensities"),
    78: ("white_matter", "Left-WM-hypointensities"),
    79: ("white_matter", "Right-WM-hypointensities"),
    85: ("white_matter", "Optic-Chiasm"),
    86: ("white_matter", "Corpus_Callosum"),
    250: ("white_matter", "Fornix"),
    155: ("white_matter", "Left-IntCapsule-Ant"),
    156: ("white_matter", "Right-IntCapsule-Ant"),
    157: ("white_matter", "Left-IntCapsule-Pos"),
    158: ("white_matter", "Right-IntCapsule-Pos"),
    159: ("white_matter", "Left-Cerebral-WM-unmyelinated"),
    160: ("white_matter", "Right-Cerebral-WM-unmyelinated"),
    161: ("white_matter", "Left-Cerebral-WM-myelinated"),
    162: ("white_matter", "Right-Cerebral-WM-myelinated"),
    251: ("white_matter", "CC_Posterior"),
    252: ("white_matter", "CC_Mid_Posterior"),
    253: ("white_matter", "CC_Central"),
    254: ("white_matter", "CC_Mid_Anterior"),
    255: ("white_matter", "CC_Anterior"),
    5001: ("white_matter", "Left-UnsegmentedWhiteMatter"),
    5002: ("white_matter", "Right-UnsegmentedWhiteMatter"),
    80: ("unknown", "non-WM-hypointensities"),
    81: ("unknown", "Left-non-WM-hypointensities"),
    82: ("unknown", "Right-non-WM-hypointensities"),
    25: ("unknown", "Left-Lesion"),
    57: ("unknown", "Right-Lesion"),
    99: ("unknown", "Lesion"),
    29: ("unknown", "Left-undetermined"),
    61: ("unknown", "Right-undetermined"),
    130: ("unknown", "Air"),
    165: ("unknown", "Skull"),
    258: ("unknown", "Head-ExtraCerebral"),
    259: ("unknown", "Eye-Fluid (SkullApprox in older tables)"),
    262: ("unknown", "Sinus"),
    98: ("unknown", "Dura"),
    118: ("unknown", "Epidermis"),
    119: ("unknown", "Conn-Tissue"),
    120: ("unknown", "SC-Fat/Muscle"),
    121: ("unknown", "Cranium"),
    123: ("unknown", "Muscle"),
    125: ("unknown", "Adipose"),
    127: ("unknown", "Soft-Tissue"),
    129: ("unknown", "Bone"),
    131: ("unknown", "Orbital-Fat"),
    134: ("unknown", "Globe"),
    142: ("unknown", "Diploe"),
    143: ("unknown", "Vitreous-Humor"),
    166: ("unknown", "Posterior-fossa"),
    167: ("unknown", "Scalp"),
}

#: Inclusive code ranges of the cortical / white-matter parcellations -> class.
RANGE_CLASSES: tuple[tuple[int, int, str, str], ...] = (
    (1000, 2999, "grey_matter", "ctx-lh-* / ctx-rh-* cortical parcels (Desikan, a2005s, DKT)"),
    (3000, 4999, "white_matter", "wm-lh-* / wm-rh-* white-matter parcels (wmparc)"),
    (11100, 12999, "grey_matter", "ctx_lh_* / ctx_rh_* cortical parcels (a2009s)"),
    (13100, 14999, "white_matter", "wm_lh_* / wm_rh_* white-matter parcels (a2009s)"),
)


def class_of(code: int) -> str | None:
    """The tissue class of one FreeSurfer code, or ``None`` if the table lacks it."""
    if code in ASEG_CLASSES:
        return ASEG_CLASSES[code][0]
    for low, high, name, _ in RANGE_CLASSES:
        if low <= code <= high:
            return name
    return None


def unknown_codes(codes: Iterable[int]) -> list[int]:
    """The codes among ``codes`` that the table does not know (they become ``unknown``)."""
    return sorted(int(c) for c in codes if class_of(int(c)) is None)


#: HCP's rule for ``brainmask_fs`` (PostFreeSurfer: ``fslmaths wmparc -bin -dilD -dilD -dilD -ero -ero``, then
#: ``wb_command -volume-fill-holes``): the labelled voxels grown by three 3x3x3 boxes and shrunk by two, on 1 mm
#: voxels, in mm so that other voxel sizes get the same mask.
BRAIN_MASK_GROW_MM, BRAIN_MASK_SHRINK_MM = 3.0, 2.0


def hcp_brain_mask(labelled: np.ndarray, zooms) -> np.ndarray:
    """HCP's ``brainmask_fs`` from the voxels a FreeSurfer segmentation labels as brain (``wmparc > 0``).

    The closing bridges sulci and the net 1 mm growth takes in the pial surface's partial-volume voxels;
    CSF beyond that (which FreeSurfer leaves unlabelled, SynthSeg's maps and the learned segmenter label
    it) stays outside.  Box-shaped, as fslmaths' kernels: half-widths of ``round(mm / voxel size)`` voxels
    (at least 1) per axis; the filled holes are the ventricles where they are not labelled."""

    def box(mm: float) -> tuple[int, ...]:
        return tuple(2 * max(1, int(round(mm / float(z)))) + 1 for z in zooms)

    grown = ndimage.maximum_filter(np.asarray(labelled, bool), size=box(BRAIN_MASK_GROW_MM), mode="constant")
    shrunk = ndimage.minimum_filter(grown, size=box(BRAIN_MASK_SHRINK_MM), mode="constant", cval=False)
    return ndimage.binary_fill_holes(shrunk)


def tissue_bits(seg: np.ndarray, brain_mask: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Encode a segmentation and brain mask as one uint8 bit field per voxel.

    Returns the bit field (same shape as ``seg``) and the sorted list of codes the
    table does not know, which were classed ``unknown``.
    """
    seg = np.asarray(seg)
    if not np.issubdtype(seg.dtype, np.integer) or seg.dtype == np.uint64:
        seg = seg.astype(np.int64)  # codes stored as floats (e.g. Avgwmparc), as before
    low, high = (int(seg.min()), int(seg.max())) if seg.size else (0, 0)
    if high - low < DENSE_CODE_RANGE:  # FreeSurfer codes (0..14175): a table indexed by code, O(n)
        offsets = seg - np.asarray(low, seg.dtype) if low else seg
        codes = np.flatnonzero(np.bincount(offsets.ravel(), minlength=high - low + 1)) + low
        table = np.zeros(high - low + 1, np.uint8)
        table[codes - low] = _code_bits(codes)
        bits = table[offsets]
    else:  # sparse, far-apart codes: sort once
        codes, inverse = np.unique(seg.astype(np.int64, copy=False), return_inverse=True)
        bits = _code_bits(codes)[inverse.reshape(seg.shape)]
    bits |= np.asarray(brain_mask, dtype=bool).astype(np.uint8) << BIT["brain"]
    return bits, unknown_codes(codes)


def _code_bits(codes: np.ndarray) -> np.ndarray:
    return np.array([1 << BIT[class_of(int(c)) or "unknown"] for c in codes], dtype=np.uint8)


def has_class(bits: np.ndarray, name: str) -> np.ndarray:
    """Where a bit field has class ``name`` (bool, same shape)."""
    return ((bits >> BIT[name]) & 1).astype(bool)


def in_brain(bits: np.ndarray) -> np.ndarray:
    """The brain mask of a bit field (bool, same shape)."""
    return has_class(bits, "brain")


def exclusive_class(bits: np.ndarray) -> np.ndarray:
    """Index ``i`` (1..7) in ``CLASSES`` of each voxel's one class besides ``brain``, as uint8."""
    return (np.argmax([(bits >> b) & 1 for b in range(1, len(CLASSES))], axis=0) + 1).astype(np.uint8)


def expand_bits(bits: np.ndarray, dtype=np.float32) -> np.ndarray:
    """Expand a bit field ``(...)`` to ``(8, ...)`` channels coded -1/+1 (paper, section 3)."""
    shifts = np.arange(len(CLASSES), dtype=np.uint8).reshape((-1,) + (1,) * bits.ndim)
    on = (bits[np.newaxis] >> shifts) & 1
    return (on.astype(dtype) * 2 - 1).astype(dtype, copy=False)


def class_voxel_counts(bits: np.ndarray) -> dict[str, int]:
    """Voxels per class of a bit field (the per-class volume in voxels)."""
    counts = np.bincount(bits.ravel(), minlength=256)
    values = np.arange(256)
    return {name: int(counts[(values >> i) & 1 == 1].sum()) for i, name in enumerate(CLASSES)}


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two boolean masks (0 when both are empty)."""
    return 2 * float((a & b).sum()) / max(float(a.sum() + b.sum()), 1.0)


def class_dice(
    reference_seg: np.ndarray, reference_brain: np.ndarray, seg: np.ndarray, brain: np.ndarray
) -> dict[str, float]:
    """Dice per class of ``CLASSES`` between two segmentations (FreeSurfer codes), each with its brain mask."""
    ref, _ = tissue_bits(reference_seg, reference_brain)
    ours, _ = tissue_bits(seg, brain)
    return {name: dice(has_class(ref, name), has_class(ours, name)) for name in CLASSES}


def markdown_table() -> str:
    """The table as the Markdown page ``docs/labels.md`` (a test keeps the two equal)."""
    lines = [
        "# Tissue classes: FreeSurfer code -> the paper's eight classes",
        "",
        f"Generated by `mrsynth labels --markdown` (label table version {TABLE_VERSION}); "
        "the source of truth is `src/mrsynth/labels.py`, whose docstring explains the choices.",
        "",
        "Channel order: " + ", ".join(f"{i + 1}. `{name}`" for i, name in enumerate(CLASSES)) + ".",
        "`brain` is the brain mask, on top of the other classes; every voxel has exactly one of the",
        "other seven. Codes not listed here are classed `unknown` and reported with a warning.",
        "",
        "| FreeSurfer code(s) | class | structure |",
        "|---|---|---|",
    ]
    lines += [f"| {codes} | {cls} | {name} |" for codes, cls, name in table_rows()]
    return "\n".join(lines) + "\n"


def table_rows() -> list[tuple[str, str, str]]:
    """The whole table as (codes, class, structure) rows, for the docs and ``mrsynth labels``."""
    rows = [(str(code), cls, name) for code, (cls, name) in sorted(ASEG_CLASSES.items())]
    rows += [(f"{low}-{high}", cls, name) for low, high, cls, name in RANGE_CLASSES]
    return rows
