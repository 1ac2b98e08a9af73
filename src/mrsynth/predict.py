"""Whole-volume prediction: T1w (+ segmentation and brain mask) -> T2w NIfTI.

The network is fully convolutional, so a volume is predicted slice by slice as whole
slices (no patches, no seams), in batches, with the normalization the model was trained
with.  The output is float32 on the T1w's grid, with its affine and header.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Callable

import nibabel as nib
import numpy as np
import torch
from . import labels, nifti
from .atomic import check_writable, remove_leftovers, write_file
from .cache import PreparedSubject, intensity_stats, is_prepared_cache, list_prepared, masks_source, resolve_axis
from .derivatives import ModelProvenance, Output, output_is_bids
from .errors import InputError
from .logs import bar, log
from .masks import METHOD as ATLAS_METHOD
from .masks import check_source, compute_masks, refuse_auto_on_cache
from .modelfile import ModelInfo
from .networks import WindowedStack, inference_model, is_plain_stack
from .normalization import Transform
from .patches import slice_offsets
from .runtime import tune_allocator
from .subjects import Subject, detect_layout, discover, load_subject


@torch.inference_mode()
def predict_slices(model: torch.nn.Module, info: ModelInfo, t1: np.ndarray, bits: np.ndarray | None,
                   t1_transform: Transform, batch_size: int = 8, device="cpu",
                   progress: bool = False, optimized: bool = True, brain: np.ndarray | None = None,
                   skip_background: bool = True) -> np.ndarray:
    """Predict a slice-major volume ``(S, H, W)``; returns T2w in intensity units.

    ``bits`` (tissue bit field) is needed by models with tissue masks, ``brain`` (bool) by
    models that strip the T1w (``info.strip``); both slice-major like ``t1``.

    ``optimized`` (default): BatchNorm folded into the convolutions and channels-last
    layout (same numbers within float tolerance); ``False`` runs the eval-mode network
    as is, for comparison.

    ``skip_background`` (default): the network runs only where its output can differ from
    its output on a background slice (T1w 0, tissue classes of code 0 outside the brain):
    batches whose slices (and 2.5D neighbours) are all background take the background
    slice's output, computed once; with a network of finite receptive radius ``R`` (the
    FCN, the lookup baselines) each batch is cropped in-plane to the bounding box of its
    non-background voxels plus ``R``, the rest taken from the background slice.  The paper's
    FCN (a plain stack of 3x3 convolutions) is computed on that window with every layer
    padded by the background slice's activation (:class:`~mrsynth.networks.windowed.WindowedStack`);
    other networks of finite radius on the box plus ``2R``, of which the box plus ``R`` is kept.
    Exact: an output voxel depends only on the inputs within ``R`` and on the image edges,
    which the crop keeps (tested against the full computation).  A U-Net's pooling grid would
    move with a crop: it skips whole batches only.
    """
    tune_allocator()
    if info.strip and brain is None:
        raise ValueError("this model strips the T1w outside the brain mask: give the brain mask")
    out_scale, out_shift = info.norm().to_intensity()
    radius = getattr(model, "receptive_radius", None)
    model = inference_model(model, device) if optimized else model.to(device).eval()
    layout = torch.channels_last if optimized else torch.contiguous_format
    windowed = skip_background and optimized and is_plain_stack(model)

    def tensor(inputs: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(inputs).to(device).contiguous(memory_format=layout)

    def intensity(output: torch.Tensor) -> np.ndarray:
        return output[:, 0].float().cpu().numpy() * out_scale + out_shift

    source = _InputSlices(info, t1, bits, brain, t1_transform)
    content = source.content() if skip_background else None
    full = (slice(0, t1.shape[1]), slice(0, t1.shape[2]))

    def crop(start: int, stop: int):
        if content is None:
            return full, full
        return _crop(content, start - info.context, stop + info.context, radius, windowed)

    background = stack = None
    out = np.empty(t1.shape, np.float32)
    budget = CPU_BATCH_PIXELS if torch.device(device).type == "cpu" else None
    progress_bar = bar(total=t1.shape[0], allowed=progress, desc="predict", unit="slice", leave=False)
    for start, stop, window, keep in _batches(t1.shape[0], batch_size, budget, crop):
        progress_bar.update(stop - start)
        if window == full:  # no crop: the whole slices, as without skipping
            out[start:stop] = intensity(model(tensor(source.batch(start, stop, full))))
            continue
        if background is None:
            background_slice = tensor(source.background_slice())
            stack = WindowedStack(model, background_slice) if windowed else None
            background = intensity(stack.background if windowed else model(background_slice))[0]
        out[start:stop] = background
        if window is None:
            continue
        inputs = tensor(source.batch(start, stop, window))
        prediction = intensity(stack(inputs, *window) if windowed else model(inputs))
        inner = tuple(slice(k.start - w.start, k.stop - w.start) for k, w in zip(keep, window))
        out[start:stop, keep[0], keep[1]] = prediction[:, inner[0], inner[1]]
    progress_bar.close()
    return out


#: On a CPU, a batch holds at most this many pixels (or one slice): its activations then stay in
#: the processor's cache; measured faster than 8 whole crops (benchmarks/RESULTS.md, prediction).
CPU_BATCH_PIXELS = 2 ** 18


def _batches(total: int, batch_size: int, pixel_budget: int | None, crop):
    """Consecutive slices ``(start, stop, window, keep)``: at most ``batch_size`` slices, and at
    most ``pixel_budget`` pixels of window (``crop(start, stop)``) unless a single slice has more."""
    start = 0
    while start < total:
        stop = start + 1
        window, keep = crop(start, stop)
        while stop < min(start + batch_size, total):
            grown = crop(start, stop + 1)
            if pixel_budget is not None and (stop + 1 - start) * _pixels(grown[0]) > pixel_budget:
                break
            stop, (window, keep) = stop + 1, grown
        yield start, stop, window, keep
        start = stop


def _pixels(window: tuple[slice, slice] | None) -> int:
    return 0 if window is None else (window[0].stop - window[0].start) * (window[1].stop - window[1].start)


CROP_STEP = 8  # crop windows are multiples of this many pixels (or the whole slice)


class _InputSlices:
    """The network input of a slice-major volume, batch by batch (optionally cropped in-plane)."""

    def __init__(self, info: ModelInfo, t1: np.ndarray, bits: np.ndarray | None, brain: np.ndarray | None,
                 transform: Transform):
        self.info, self.t1, self.bits, self.brain, self.transform = info, t1, bits, brain, transform
        #: the tissue bit field of background (segmentation code 0 outside the brain mask)
        self.background_bits = labels.tissue_bits(np.zeros(1, np.int32), np.zeros(1, bool))[0][0]

    def batch(self, start: int, stop: int, window: tuple[slice, slice]) -> np.ndarray:
        channels = []
        for offset in slice_offsets(self.info.context):
            slices = _slices(self.t1, start + offset, stop + offset, window)
            if self.info.strip:
                slices *= _slices(self.brain, start + offset, stop + offset, window)
            channels.append(self.transform(slices)[:, np.newaxis])
        if self.info.uses_masks:
            bits = np.asarray(self.bits[start:stop, window[0], window[1]])
            channels.append(np.moveaxis(labels.expand_bits(bits), 0, 1))
        return np.concatenate(channels, axis=1)

    def background_slice(self) -> np.ndarray:
        """One slice of pure background, as the network sees it."""
        shape = (1,) + self.t1.shape[1:]
        channels = [self.transform(np.zeros(shape, np.float32))[:, np.newaxis]] * self.info.t1_channels
        if self.info.uses_masks:
            bits = np.full(shape, self.background_bits, np.uint8)
            channels.append(np.moveaxis(labels.expand_bits(bits), 0, 1))
        return np.concatenate(channels, axis=1)

    def content(self) -> tuple[np.ndarray, np.ndarray]:
        """Per slice, which rows and which columns hold a voxel whose input differs from background."""
        rows = np.zeros(self.t1.shape[:2], bool)
        cols = np.zeros((self.t1.shape[0], self.t1.shape[2]), bool)
        for start in range(0, self.t1.shape[0], 16):  # in chunks: no full-volume temporaries
            stop = min(start + 16, self.t1.shape[0])
            signal = np.asarray(self.t1[start:stop]) != 0
            if self.info.strip:
                signal &= np.asarray(self.brain[start:stop], bool)
            if self.info.uses_masks:
                signal |= np.asarray(self.bits[start:stop]) != self.background_bits
            rows[start:stop], cols[start:stop] = signal.any(axis=2), signal.any(axis=1)
        return rows, cols


def _crop(content: tuple[np.ndarray, np.ndarray], low: int, high: int, radius: int | None,
          background_padding: bool = False):
    """(window to compute, region to keep) for slices ``low:high``, or ``(None, None)`` if all background.

    Without a finite ``radius`` the window is the whole slice.  With ``background_padding``
    (:class:`~mrsynth.networks.windowed.WindowedStack`) the window is the region to keep: the
    content grown by ``radius``; otherwise it is grown by ``2 * radius`` and its outer ``radius``
    computed with the wrong (zero) padding around it.
    """
    rows, cols = (c[max(low, 0):max(high, 0)].any(axis=0) for c in content)
    if not rows.any():
        return None, None
    full = (slice(0, rows.size), slice(0, cols.size))
    if radius is None:
        return full, full

    def span(present: np.ndarray, margin: int) -> slice:
        found = np.flatnonzero(present)
        return slice(max(int(found[0]) - margin, 0), min(int(found[-1]) + 1 + margin, present.size))

    if background_padding:
        window = (_round_up(span(rows, radius), rows.size), _round_up(span(cols, radius), cols.size))
        return window, window
    window = (_round_up(span(rows, 2 * radius), rows.size), _round_up(span(cols, 2 * radius), cols.size))
    return window, (span(rows, radius), span(cols, radius))


def _round_up(window: slice, size: int, step: int = CROP_STEP) -> slice:
    """``window`` grown to a multiple of ``step`` pixels inside ``0:size``: fewer distinct batch shapes.

    oneDNN sets up its kernels anew for each input shape; a larger window only computes more
    of what is kept anyway, so the output is unchanged.  8 measured best of 8, 16, 32 and 64
    (benchmarks/RESULTS.md, prediction).
    """
    length = min(-(-(window.stop - window.start) // step) * step, size)
    start = max(min(window.start, size - length), 0)
    return slice(start, start + length)


def _slices(volume: np.ndarray, start: int, stop: int, window=(slice(None), slice(None))) -> np.ndarray:
    """Slices ``start:stop`` of a slice-major volume, cropped to ``window``, as float32; slices outside it read as 0."""
    rows, cols = window
    height = len(range(*rows.indices(volume.shape[1])))
    width = len(range(*cols.indices(volume.shape[2])))
    out = np.zeros((stop - start, height, width), np.float32)
    low, high = max(start, 0), min(stop, volume.shape[0])
    if low < high:
        out[low - start:high - start] = volume[low:high, rows, cols]
    return out


def check_inputs(info: ModelInfo, seg: np.ndarray | None, mask: np.ndarray | None, source) -> None:
    """Refuse a prediction whose model needs a segmentation or brain mask that was not given."""
    method = info.norm().method
    if info.uses_masks and (seg is None or mask is None):
        raise InputError("this model uses tissue masks: give a segmentation (--seg) and a brain mask (--mask)", source)
    if info.strip and mask is None:
        raise InputError("this model strips the T1w outside the brain mask: give the mask (--mask)", source)
    if method != "paper" and mask is None:
        raise InputError(f"this model uses {method} normalization, which needs a brain mask (--mask)", source)


def t1_transform(info: ModelInfo, t1: np.ndarray, mask: np.ndarray | None, source="input") -> Transform:
    """The T1w intensity transform the model's normalization gives this subject (brain statistics from ``mask``)."""
    stats = {"t1": intensity_stats(t1, mask if mask is not None else np.ones(t1.shape, bool))}
    try:
        return info.norm().transform("t1", stats)
    except ValueError as error:
        raise InputError(str(error), source) from error


def predict_arrays(model, info: ModelInfo, t1: np.ndarray, affine: np.ndarray, seg: np.ndarray | None = None,
                   mask: np.ndarray | None = None, batch_size: int = 8, device="cpu",
                   progress: bool = False, source: str = "input", transform: Transform | None = None) -> np.ndarray:
    """Predict a T2w volume (native axis order) from in-memory T1w, segmentation and mask.

    ``transform``: the subject's T1w transform when already computed (:func:`t1_transform`).
    """
    check_inputs(info, seg, mask, source)
    axis = resolve_axis(info.axis, affine)
    transform = transform or t1_transform(info, t1, mask, source)
    bits = labels.tissue_bits(seg, mask)[0] if info.uses_masks else None
    front = lambda v: None if v is None else np.moveaxis(v, axis, 0)
    out = predict_slices(model, info, front(t1), front(bits), transform, batch_size, device, progress,
                         brain=front(mask))
    return np.moveaxis(out, 0, axis)


def predict_prepared(model, info: ModelInfo, subject: PreparedSubject, batch_size: int = 8, device="cpu",
                     progress: bool = False, transform: Transform | None = None) -> np.ndarray:
    """Predict a prepared subject (same statistics as training); returns native axis order."""
    if subject.axis_request != info.axis:
        raise InputError(f"prepared with slicing axis {subject.axis_request!r}, "
                         f"the model uses {info.axis!r}", subject.folder)
    transform = transform or info.norm().transform("t1", subject.stats)
    tissue = subject.array("tissue")
    brain = labels.in_brain(np.asarray(tissue)) if info.strip else None
    out = predict_slices(model, info, subject.array("t1"), tissue if info.uses_masks else None, transform,
                         batch_size, device, progress, brain=brain)
    return subject.to_native(out)


def write_like(volume: np.ndarray, reference: nib.Nifti1Image | None, affine: np.ndarray, path: str | Path) -> Path:
    """Write float32 ``volume`` with the reference image's header and affine, atomically
    (and remove what killed predictions left beside it)."""
    remove_leftovers(Path(path).parent)
    header = reference.header.copy() if reference is not None else None
    image = nib.Nifti1Image(volume.astype(np.float32), affine, header=header)
    image.set_data_dtype(np.float32)
    image.header.set_slope_inter(1.0, 0.0)
    return write_file(path, lambda temporary: nifti.save(image, temporary))


def check_output(path: Path) -> Path:
    """An output NIfTI path that can be written and says its format (.nii or .nii.gz); checked before computing."""
    if not Path(path).name.endswith((".nii", ".nii.gz")):
        raise InputError("the output must be a NIfTI file named .nii.gz (compressed) or .nii", path)
    return check_writable(path)


def needs_masks(info: ModelInfo) -> bool:
    """Whether a model needs a brain mask (and maybe tissue masks) at prediction."""
    return info.uses_masks or info.strip or info.norm().method != "paper"


def warn_if_masks_differ(info: ModelInfo, used: str, source) -> None:
    """Say so when prediction masks come from elsewhere than the training masks (never silently mixed).

    ``used``: ``files`` or an automatic method; a model's ``auto`` (written before there were two methods)
    is the atlas method."""
    trained = ATLAS_METHOD if info.masks == "auto" else info.masks
    if needs_masks(info) and used != trained:
        log.warning("%s: masks from %s, but the model was trained on masks from %s: masks from different sources "
                    "differ systematically, expect some loss of accuracy", source, used, trained)


def predict_files(model, info: ModelInfo, t1: Path, out: Path, seg: Path | None = None, mask: Path | None = None,
                  masks: str = "files", before_write: Callable[[Transform], object] | None = None,
                  **kwargs) -> Path:
    """T1w (+ seg, mask) NIfTI files -> predicted T2w NIfTI with the T1w's header and affine.

    ``masks`` other than ``files`` (``auto`` or a method of :mod:`mrsynth.masks`): the brain mask and
    segmentation are computed from the T1w (``seg`` and ``mask`` must then be absent).  ``before_write``
    is called with the subject's T1w transform once the volume is predicted, before it is
    written (the BIDS sidecar goes first).
    """
    masks = check_source(masks)
    if masks != "files" and (seg or mask):
        raise InputError("give either automatic --masks or --seg/--mask files, not both", t1)
    check_output(out)
    subject = Subject(id="input", t1=Path(t1), seg=seg and Path(seg), mask=mask and Path(mask))
    volumes = load_subject(subject, need_labels=False)
    if masks != "files" and needs_masks(info):
        automatic = compute_masks(volumes.t1, volumes.affine, source=t1, method=masks)
        volumes.seg, volumes.mask = automatic.seg, automatic.brain
    warn_if_masks_differ(info, masks, t1)
    check_inputs(info, volumes.seg, volumes.mask, t1)
    transform = t1_transform(info, volumes.t1, volumes.mask, t1)
    volume = predict_arrays(model, info, volumes.t1, volumes.affine, volumes.seg, volumes.mask,
                            source=str(t1), transform=transform, **kwargs)
    if before_write is not None:
        before_write(transform)
    return write_like(volume, nib.load(str(t1)), volumes.affine, out)  # the header only: lazy


def predict_prepared_file(model, info: ModelInfo, subject: PreparedSubject, out: Path,
                          before_write: Callable[[Transform], object] | None = None, **kwargs) -> Path:
    """Predict a prepared subject into a NIfTI with its source T1w's header (when still there) and affine."""
    check_output(out)
    warn_if_masks_differ(info, masks_source(subject.meta), subject.folder)
    transform = info.norm().transform("t1", subject.stats)
    volume = predict_prepared(model, info, subject, transform=transform, **kwargs)
    if before_write is not None:
        before_write(transform)
    source = Path(subject.meta["sources"]["t1"]["path"])
    reference = nifti.load(source) if source.exists() else None
    return write_like(volume, reference, subject.affine, out)


def predict_many(model, info: ModelInfo, root: Path, out_dir: Path, masks: str = "files", output: str = "auto",
                 model_folder: Path | None = None, **kwargs) -> list[Path]:
    """Predict every subject of a prepared cache or a data folder (any layout) into ``out_dir``.

    ``output``: ``flat`` (``out_dir/<id>.nii.gz``), ``bids`` (a BIDS derivatives dataset with a
    JSON sidecar per prediction, :mod:`mrsynth.derivatives`) or ``auto`` (BIDS for BIDS input).
    ``masks`` other than ``files`` (data folders only): masks computed from each T1w, the subjects' own ignored.
    """
    root = Path(root)
    masks = check_source(masks)
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
            written.append(predict_prepared_file(model, info, subject, target.image_path(subject.id),
                                                 before_write=sidecar, **kwargs))
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
        written.append(predict_files(model, info, subject.t1, target.image_path(subject.id), *own,
                                     masks=masks, before_write=sidecar, **kwargs))
        log.info("predict %s: %s", subject.id, written[-1])
    return written
