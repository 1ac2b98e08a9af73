"""Whole-volume prediction: T1w (+ segmentation and brain mask) -> T2w, in memory or NIfTI to NIfTI.

Arrays, prepared subjects, files and whole data folders (flat or BIDS derivatives output) all go through
:func:`~mrsynth.networks.predict_slices`, on the grid the model's input contract names.  The output is float32 on
the T1w's grid, with its affine and header.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import nibabel as nib
import numpy as np

from .. import labels
from ..atomic import check_writable, refuse_overwriting, remove_leftovers, write_file
from ..data import PreparedSubject, is_prepared_cache, list_prepared, masks_source
from ..errors import InputError
from ..io import Subject, SubjectVolumes, detect_layout, discover, load_subject, nifti, resolve_axis
from ..logs import log
from ..masks import (
    check_brain,
    check_source,
    check_t1,
    compute_masks,
    contrast_check,
    recorded_method,
    refuse_auto_on_cache,
)
from ..networks import ModelInfo, Transform, predict_slices
from ..networks.grids import average_onto, resample_onto
from ..networks.inputs import onto_work_grid, resample_inputs
from .derivatives import ModelProvenance, Output, output_is_bids


def check_inputs(info: ModelInfo, seg: np.ndarray | None, mask: np.ndarray | None, source) -> None:
    """Refuse a prediction whose model needs a segmentation or brain mask that was not given."""
    spec = info.spec
    if spec.tissue_masks and (seg is None or mask is None):
        raise InputError("this model uses tissue masks: give a segmentation (--seg) and a brain mask (--mask)", source)
    if spec.strip and mask is None:
        raise InputError("this model strips the T1w outside the brain mask: give the mask (--mask)", source)
    if spec.needs_brain and mask is None:
        method = info.norm().method
        raise InputError(f"this model uses {method} normalization, which needs a brain mask (--mask)", source)


def t1_transform(info: ModelInfo, t1: np.ndarray, mask: np.ndarray | None, source="input") -> Transform:
    """The T1w intensity transform the model's normalization gives this subject, its statistics from the input as
    given (inside ``mask``): the spec's ``statistics = "input"``."""
    try:
        return info.norm().transform_volume("t1", t1, mask)
    except ValueError as error:
        raise InputError(str(error), source) from error


def predict_arrays(
    model,
    info: ModelInfo,
    t1: np.ndarray,
    affine: np.ndarray,
    seg: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    batch_size: int = 8,
    device="cpu",
    progress: bool = False,
    source: str = "input",
    transform: Transform | None = None,
) -> np.ndarray:
    """Predict a T2w volume (native axis order) from in-memory T1w, segmentation and mask.

    ``transform``: the subject's T1w transform when already computed (:func:`t1_transform`).
    """
    check_inputs(info, seg, mask, source)
    transform = transform or t1_transform(info, t1, mask, source)
    options = {"batch_size": batch_size, "device": device, "progress": progress}
    if info.spec.grid_mm:
        return _on_work_grid(model, info, t1, affine, seg, mask, transform, options, source)
    axis = resolve_axis(info.spec.axis, affine)
    bits = labels.tissue_bits(seg, mask)[0] if info.uses_masks else None
    front = lambda v: None if v is None else np.moveaxis(v, axis, 0)
    out = predict_slices(model, info, front(t1), front(bits), transform, brain=front(mask), **options)
    return np.moveaxis(out, 0, axis)


def _on_work_grid(
    model, info: ModelInfo, t1, affine, seg, mask, transform: Transform, options: dict, source
) -> np.ndarray:
    """A model that works on its own grid (``spec.grid_mm``: RAS, isotropic): the input resampled onto it
    (:func:`~mrsynth.networks.inputs.resample_inputs`, as for training), predicted there, the prediction brought
    back onto the input's grid: trilinear at each voxel's centre, or, where the spec asks (``footprint``), averaged
    over each voxel's footprint (:func:`~mrsynth.networks.grids.average_onto`)."""
    grid = onto_work_grid(info.spec, affine, t1.shape, source)
    bits = labels.tissue_bits(seg, mask)[0] if info.uses_masks else None
    work = resample_inputs(grid, affine, t1, bits=bits, brain=mask)
    axis = resolve_axis(info.spec.axis, grid.affine)
    front = lambda v: None if v is None else np.moveaxis(v, axis, 0)
    out = predict_slices(
        model, info, front(work["t1"]), front(work["bits"]), transform, brain=front(work["brain"]), **options
    )
    if info.spec.footprint:
        back = average_onto(np.moveaxis(out, 0, axis), grid.affine, t1.shape, affine, info.spec.grid_mm)
    else:
        back = resample_onto(np.moveaxis(out, 0, axis), grid.affine, t1.shape, affine, order=1)
    if info.spec.brain_only and mask is not None:
        back[~np.asarray(mask, bool)] = 0
    return back


def predict_prepared(
    model,
    info: ModelInfo,
    subject: PreparedSubject,
    batch_size: int = 8,
    device="cpu",
    progress: bool = False,
    transform: Transform | None = None,
) -> np.ndarray:
    """Predict a prepared subject (same statistics as training); returns native axis order."""
    transform = transform or info.norm().transform("t1", subject.stats)
    if info.spec.grid_mm:  # a model with a grid of its own predicts the subject's volumes on that grid
        volumes = subject.native()
        options = {"batch_size": batch_size, "device": device, "progress": progress}
        return predict_arrays(
            model,
            info,
            volumes.t1,
            volumes.affine,
            None,
            volumes.brain,
            source=str(subject.folder),
            transform=transform,
            **options,
        )
    if subject.axis_request != info.spec.axis:
        raise InputError(
            f"prepared with slicing axis {subject.axis_request!r}, the model uses {info.spec.axis!r}", subject.folder
        )
    tissue = subject.array("tissue")
    brain_only = info.spec.brain_only or getattr(model, "brain_only", False)
    brain = labels.in_brain(np.asarray(tissue)) if info.spec.strip or brain_only else None
    out = predict_slices(
        model,
        info,
        subject.array("t1"),
        tissue if info.uses_masks else None,
        transform,
        batch_size,
        device,
        progress,
        brain=brain,
    )
    return subject.to_native(out)


def write_like(
    volume: np.ndarray,
    reference: nib.Nifti1Image | None,
    affine: np.ndarray,
    path: str | Path,
    stamp: str = "",
    dtype=np.float32,
) -> Path:
    """Write ``volume`` as ``dtype`` (float32: a T2w; uint8: a mask) with the reference image's header and affine,
    atomically (and remove what killed predictions left beside it); ``stamp`` (what made it) goes into ``descrip``."""
    remove_leftovers(Path(path).parent)
    header = reference.header.copy() if reference is not None else None
    image = nib.Nifti1Image(volume.astype(dtype), affine, header=header)
    if stamp:
        image.header["descrip"] = stamp.encode()[:79]
    image.set_data_dtype(dtype)
    image.header.set_slope_inter(1.0, 0.0)
    return write_file(path, lambda temporary: nifti.save(image, temporary))


def check_output(path: str | Path) -> Path:
    """An output NIfTI path that can be written and says its format (.nii or .nii.gz); checked before computing."""
    check_writable(path)
    if not Path(path).name.endswith((".nii", ".nii.gz")):
        raise InputError("the output must be a NIfTI file named .nii.gz (compressed) or .nii", path)
    return Path(path)


def needs_masks(info: ModelInfo) -> bool:
    """Whether a model needs a brain mask (and maybe tissue masks) at prediction."""
    return info.spec.needs_brain


def warn_if_masks_differ(info: ModelInfo, used: str, source) -> None:
    """Say so when prediction masks come from elsewhere than the training masks (never silently mixed).

    ``used``: ``files`` or an automatic method; a model's ``auto`` (written before there were two methods)
    is the atlas method."""
    trained = recorded_method(info.masks)
    if needs_masks(info) and used != trained and trained != "any":
        log.warning(
            "%s: masks from %s, but the model was trained on masks from %s: masks from different sources "
            "differ systematically, expect some loss of accuracy",
            source,
            used,
            trained,
        )


def predict_files(
    model,
    info: ModelInfo,
    t1: Path,
    out: Path,
    seg: Path | None = None,
    mask: Path | None = None,
    masks: str = "files",
    before_write: Callable[[Transform, list[str]], object] | None = None,
    **kwargs,
) -> Path:
    """T1w (+ seg, mask) NIfTI files -> predicted T2w NIfTI with the T1w's header and affine.

    ``masks`` other than ``files`` (``auto`` or a method of :mod:`mrsynth.masks`): the brain mask and
    segmentation are computed from the T1w (``seg`` and ``mask`` must then be absent); so is the brain mask of a
    model that reads the T1w alone when none is given.  Every input is checked before anything is computed, the
    same way whether or not a mask is given; what reading changed or doubts is logged once and handed, with the
    subject's T1w transform, to ``before_write`` once the volume is predicted, before it is written (the BIDS
    sidecar goes first).  The output is never one of the inputs.
    """
    masks = check_source(masks)
    if masks != "files" and (seg or mask):
        raise InputError("give either automatic --masks or --seg/--mask files, not both", t1)
    inputs = {"--t1": t1, "--seg": seg, "--mask": mask}
    for path in (p for p in inputs.values() if p is not None):  # every input there before anything is said
        if not Path(path).exists():
            raise InputError("file not found", path)
    check_output(out)
    refuse_overwriting([out], inputs)
    if seg is not None and not info.uses_masks:
        log.info("%s: this model reads no tissue masks: --seg is not used", seg)
    if masks == "files" and mask is None and needs_masks(info) and not info.uses_masks:
        masks = check_source("auto")  # a T1w-only model needs only a brain mask: computed, and said so
        log.info("%s: no brain mask given (--mask): computing one from the T1w (%s)", t1, masks)
    checked = checked_inputs(info, Path(t1), seg, mask, masks)
    volumes, notes = checked.volumes, checked.notes
    warn_if_masks_differ(info, masks, t1)
    check_inputs(info, volumes.seg, volumes.mask, t1)
    transform = t1_transform(info, volumes.t1, volumes.mask, t1)
    volume = predict_arrays(
        model,
        info,
        volumes.t1,
        volumes.affine,
        volumes.seg,
        volumes.mask,
        source=str(t1),
        transform=transform,
        **kwargs,
    )
    if before_write is not None:
        before_write(transform, notes)
    return write_like(volume, nib.load(str(t1)), volumes.affine, Path(out), info.stamp())  # the header only: lazy


@dataclass
class CheckedInputs:
    """A T1w file's volumes (with the brain mask and segmentation used), read and checked, what reading them
    changed or doubts (``notes``), and where the masks come from with the contrast check's confidences
    (``masks``)."""

    volumes: SubjectVolumes
    notes: list[str]
    masks: dict


def checked_inputs(info: ModelInfo, t1: Path, seg: Path | None, mask: Path | None, masks: str) -> CheckedInputs:
    """The input volumes, read and checked (the T1w usable, not constant in the brain, not looking like a T2w) the
    same way whether the mask is given or computed, the masks computed by ``masks`` (a method) where the model
    needs them and none are given; each note logged once."""
    volumes = load_subject(
        Subject(id="input", t1=t1, seg=seg and Path(seg), mask=mask and Path(mask)), need_labels=False
    )
    check_t1(volumes.t1, volumes.affine, t1)
    notes = list(volumes.notes)
    for note in notes:
        log.warning(note)
    record = {"source": masks}
    if masks != "files" and needs_masks(info):
        automatic = compute_masks(volumes.t1, volumes.affine, source=t1, method=masks)
        volumes.seg, volumes.mask = automatic.seg, automatic.brain
        notes += automatic.warnings
        record |= automatic.provenance
    elif volumes.mask is not None:
        check_brain(volumes.t1, volumes.mask, t1)
        warnings, contrast = contrast_check(volumes.t1, volumes.affine, t1)
        notes += warnings
        record |= contrast
    return CheckedInputs(volumes, notes, record)


def predict_prepared_file(
    model,
    info: ModelInfo,
    subject: PreparedSubject,
    out: Path,
    before_write: Callable[[Transform, list[str]], object] | None = None,
    **kwargs,
) -> Path:
    """Predict a prepared subject into a NIfTI with its source T1w's header (when still there) and affine."""
    check_output(out)
    refuse_overwriting([out], {"prepared subject's source T1w": subject.meta["sources"]["t1"]["path"]})
    warn_if_masks_differ(info, masks_source(subject.meta), subject.folder)
    transform = info.norm().transform("t1", subject.stats)
    volume = predict_prepared(model, info, subject, transform=transform, **kwargs)
    if before_write is not None:
        before_write(transform, [])
    source = Path(subject.meta["sources"]["t1"]["path"])
    reference = nifti.load(source) if source.exists() else None
    return write_like(volume, reference, subject.affine, Path(out), info.stamp())


def predict_many(
    model,
    info: ModelInfo,
    root: Path,
    out_dir: Path,
    masks: str = "files",
    output: str = "auto",
    model_folder: Path | None = None,
    **kwargs,
) -> list[Path]:
    """Predict every subject of a prepared cache or a data folder (any layout) into ``out_dir``.

    ``output``: ``flat`` (``out_dir/<id>.nii.gz``), ``bids`` (a BIDS derivatives dataset with a
    JSON sidecar per prediction, :mod:`mrsynth.derivatives`) or ``auto`` (BIDS for BIDS input).
    ``masks`` other than ``files`` (data folders only): masks computed from each T1w, the subjects' own ignored.
    """
    root = Path(root)
    masks = check_source(masks)
    refuse_overwriting([out_dir], {"--data": root})
    provenance = ModelProvenance(Path(model_folder), info) if model_folder is not None else None
    if is_prepared_cache(root):
        if masks != "files":
            refuse_auto_on_cache(root)
        subjects = list_prepared(root)
        target = Output(out_dir, output_is_bids(output, "cache"), None, provenance)
        target.prepare([subject.id for subject in subjects])
        written = []
        for subject in subjects:
            sources = {role: Path(source["path"]) for role, source in subject.meta["sources"].items()}
            sidecar = partial(target.write_sidecar, subject.id, sources, masks_source(subject.meta))
            written.append(
                predict_prepared_file(
                    model, info, subject, target.image_path(subject.id), before_write=sidecar, **kwargs
                )
            )
            log.info("predict %s: %s", subject.id, written[-1])
        return written
    subjects = discover(root)
    layout = detect_layout(root)
    source_root = root.parent if layout == "csv" else root
    target = Output(out_dir, output_is_bids(output, layout), source_root, provenance)
    target.prepare([subject.id for subject in subjects])
    written = []
    for subject in subjects:
        own = (None, None) if masks != "files" else (subject.seg, subject.mask)
        sources = {"t1": subject.t1, "seg": own[0], "mask": own[1]}
        sidecar = partial(target.write_sidecar, subject.id, sources, masks)
        written.append(
            predict_files(
                model,
                info,
                subject.t1,
                target.image_path(subject.id),
                *own,
                masks=masks,
                before_write=sidecar,
                **kwargs,
            )
        )
        log.info("predict %s: %s", subject.id, written[-1])
    return written
