"""The prediction engine: a slice-major volume through a network, whole slices in batches, computing only where
the output can differ from background.

The network is fully convolutional, so a volume is predicted slice by slice as whole slices (no patches, no
seams), with the normalization the model was trained with.

Skipping background: the network runs only where its output can differ from its output on a background slice
(T1w 0, tissue classes of code 0 outside the brain).  Batches whose slices (and 2.5D neighbours) are all
background take the background slice's output, computed once; with a network of finite receptive radius ``R``
(the FCN, the lookup baselines) each batch is cropped in-plane to the bounding box of its non-background voxels
plus ``R``, the rest taken from the background slice.  The paper's FCN (a plain stack of 3x3 convolutions) is
computed on that window with every layer padded by the background slice's activation
(:class:`~mrsynth.networks.windowed.WindowedStack`); other networks of finite radius on the box plus ``2R``, of
which the box plus ``R`` is kept.  Exact: an output voxel depends only on the inputs within ``R`` and on the image
edges, which the crop keeps (tested against the full computation).  A U-Net's pooling grid would move with a
crop: it skips whole batches only.
"""

from __future__ import annotations

import numpy as np
import torch

from .. import labels
from ..data import Transform, slice_offsets
from ..logs import bar
from ..networks import ModelInfo, WindowedStack, inference_model, is_plain_stack
from ..runtime import tune_allocator


@torch.inference_mode()
def predict_slices(
    model: torch.nn.Module,
    info: ModelInfo,
    t1: np.ndarray,
    bits: np.ndarray | None,
    t1_transform: Transform,
    batch_size: int = 8,
    device="cpu",
    progress: bool = False,
    optimized: bool = True,
    brain: np.ndarray | None = None,
    skip_background: bool = True,
) -> np.ndarray:
    """Predict a slice-major volume ``(S, H, W)``; returns T2w in intensity units, clipped at 0 (and 0 outside the
    brain for a predictor of brain tissue only, ``brain_only``: the plain lookup table).

    ``bits`` (tissue bit field) is needed by models with tissue masks, ``brain`` (bool) by
    models that strip the T1w (``info.strip``); both slice-major like ``t1``.

    ``optimized`` (default): BatchNorm folded into the convolutions and channels-last
    layout (same numbers within float tolerance); ``False`` runs the eval-mode network
    as is, for comparison.

    ``skip_background`` (default): compute only where the output can differ from background (the module
    docstring); ``False`` runs the network on every whole slice.
    """
    tune_allocator()
    if info.strip and brain is None:
        raise ValueError("this model strips the T1w outside the brain mask: give the brain mask")
    out_scale, out_shift = info.norm().to_intensity()
    radius = getattr(model, "receptive_radius", None)
    brain_only = info.brain_only or getattr(model, "brain_only", False)
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
    np.maximum(out, 0, out=out)  # T2w signal is never negative
    if brain_only and brain is not None:  # a table of brain tissue says nothing outside the brain
        out[~np.asarray(brain, bool)] = 0
    return out


#: On a CPU, a batch holds at most this many pixels (or one slice): its activations then stay in
#: the processor's cache; measured faster than 8 whole crops (benchmarks/RESULTS.md, prediction).
CPU_BATCH_PIXELS = 2**18


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

    def __init__(
        self, info: ModelInfo, t1: np.ndarray, bits: np.ndarray | None, brain: np.ndarray | None, transform: Transform
    ):
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


def _crop(
    content: tuple[np.ndarray, np.ndarray], low: int, high: int, radius: int | None, background_padding: bool = False
):
    """(window to compute, region to keep) for slices ``low:high``, or ``(None, None)`` if all background.

    Without a finite ``radius`` the window is the whole slice.  With ``background_padding``
    (:class:`~mrsynth.networks.windowed.WindowedStack`) the window is the region to keep: the
    content grown by ``radius``; otherwise it is grown by ``2 * radius`` and its outer ``radius``
    computed with the wrong (zero) padding around it.
    """
    rows, cols = (c[max(low, 0) : max(high, 0)].any(axis=0) for c in content)
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
        out[low - start : high - start] = volume[low:high, rows, cols]
    return out
