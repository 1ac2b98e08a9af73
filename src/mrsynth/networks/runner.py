"""The one whole-volume runner: a slice-major volume through a network, whole slices in batches, for synthesis
(a T2w) and segmentation (class probabilities) alike, computing only where the output can differ from background.

The networks are fully convolutional, so a volume is run slice by slice as whole slices (no patches, no seams);
each batch's input comes from :func:`~.inputs.stack_slices` under the model's :class:`~.inputs.InputSpec`, which
also says how slices are padded (``pad_multiple``) and which in-plane flips are averaged (``flips``).

Skipping background: the network runs only where its output can differ from its output on a background slice
(T1w 0, tissue classes of code 0 outside the brain).  Batches whose slices (and 2.5D neighbours) are all
background take the background slice's output, computed once; with a network of finite receptive radius ``R``
(the FCN, the lookup baselines) each batch is cropped in-plane to the bounding box of its non-background voxels
plus ``R``, the rest taken from the background slice.  The paper's FCN (a plain stack of 3x3 convolutions) is
computed on that window with every layer padded by the background slice's activation
(:class:`~.windowed.WindowedStack`); other networks of finite radius on the box plus ``2R``, of which the box plus
``R`` is kept.  Exact: an output voxel depends only on the inputs within ``R`` and on the image edges, which the
crop keeps (tested against the full computation).  A U-Net's pooling grid would move with a crop: it skips whole
batches only.
"""

from __future__ import annotations

import numpy as np
import torch

from ..logs import bar
from ..runtime import tune_allocator
from .batchnorm import inference_model
from .description import ModelInfo
from .inputs import BACKGROUND_BITS, InputSpec, stack_slices, whole_slices
from .normalization import Transform
from .windowed import WindowedStack, is_plain_stack

#: On a CPU, a batch holds at most this many pixels (or one slice): its activations then stay in
#: the processor's cache; measured faster than 8 whole crops (benchmarks/RESULTS.md, prediction).
CPU_BATCH_PIXELS = 2**18
CROP_STEP = 8  # crop windows are multiples of this many pixels (or the whole slice)


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
    """The T2w of a slice-major volume ``(S, H, W)`` in intensity units, clipped at 0 (and 0 outside the brain for
    a model of brain tissue only, ``brain_only``: the pretrained model, the plain lookup table).

    ``bits`` (tissue bit field) is needed by models with tissue masks, ``brain`` (bool) by models that strip the
    T1w or predict the brain only; both slice-major like ``t1``.  ``optimized`` (default): BatchNorm folded into
    the convolutions and channels-last layout (same numbers within float tolerance); ``False`` runs the eval-mode
    network as is.  ``skip_background`` (default): compute only where the output can differ from background (the
    module docstring); ``False`` runs the network on every whole slice.
    """
    if info.spec.strip and brain is None:
        raise ValueError("this model strips the T1w outside the brain mask: give the brain mask")
    out_scale, out_shift = info.norm().to_intensity()
    options = {"batch_size": batch_size, "device": device, "optimized": optimized, "skip_background": skip_background}
    outputs = run_network(model, info.spec, t1, t1_transform, bits, brain, progress=progress, **options)
    out = outputs[:, 0] * out_scale + out_shift
    np.maximum(out, 0, out=out)  # T2w signal is never negative
    brain_only = info.spec.brain_only or getattr(model, "brain_only", False)
    if brain_only and brain is not None:  # a table of brain tissue says nothing outside the brain
        out[~np.asarray(brain, bool)] = 0
    return out


def class_probabilities(model, info: ModelInfo, volume: np.ndarray, transform: Transform, **options) -> np.ndarray:
    """The class probabilities ``(S, K, H, W)`` of a segmentation model on a slice-major volume: the softmax of its
    outputs, averaged over the spec's in-plane flips."""
    return run_network(model, info.spec, volume, transform, activation=_softmax, **options)


def _softmax(output: torch.Tensor) -> torch.Tensor:
    return torch.softmax(output, dim=1)


@torch.inference_mode()
def run_network(
    model: torch.nn.Module,
    spec: InputSpec,
    t1: np.ndarray,
    transform: Transform,
    bits: np.ndarray | None = None,
    brain: np.ndarray | None = None,
    batch_size: int = 8,
    device="cpu",
    progress: bool = False,
    optimized: bool = True,
    skip_background: bool = True,
    activation=None,
) -> np.ndarray:
    """The network's outputs ``(S, K, H, W)`` (float32, after ``activation``, averaged over ``spec.flips``) on a
    slice-major volume, background computed once (the module docstring)."""
    tune_allocator()
    radius = getattr(model, "receptive_radius", None)
    model = inference_model(model, device) if optimized else model.to(device).eval()
    layout = torch.channels_last if optimized else torch.contiguous_format
    plain = spec.flips == ((),) and spec.pad_multiple == 1
    windowed = skip_background and optimized and plain and is_plain_stack(model)
    network = _Forward(model, spec, device, layout, activation)
    source = _Source(spec, t1, bits, brain, transform)
    content = source.content() if skip_background else None
    full = (slice(0, t1.shape[1]), slice(0, t1.shape[2]))

    def crop(start: int, stop: int):
        if content is None:
            return full, full
        return _crop(content, start - spec.context, stop + spec.context, radius if plain else None, windowed)

    background = stack = None
    out = None
    budget = CPU_BATCH_PIXELS if torch.device(device).type == "cpu" else None
    progress_bar = bar(total=t1.shape[0], allowed=progress, desc="predict", unit="slice", leave=False)
    for start, stop, window, keep in _batches(t1.shape[0], batch_size, budget, crop):
        progress_bar.update(stop - start)
        if window == full:  # no crop: the whole slices, as without skipping
            answer = network(source.batch(start, stop, full))
            out = out if out is not None else np.empty((t1.shape[0], answer.shape[1]) + t1.shape[1:], np.float32)
            out[start:stop] = answer
            continue
        if background is None:
            background_slice = source.background_slice()
            stack = WindowedStack(model, network.tensor(background_slice)) if windowed else None
            background = network.numpy(stack.background) if windowed else network(background_slice)
            out = out if out is not None else np.empty((t1.shape[0], background.shape[1]) + t1.shape[1:], np.float32)
        out[start:stop] = background[0]
        if window is None:
            continue
        inputs = source.batch(start, stop, window)
        prediction = network.numpy(stack(network.tensor(inputs), *window)) if windowed else network(inputs)
        inner = tuple(slice(k.start - w.start, k.stop - w.start) for k, w in zip(keep, window))
        out[start:stop, :, keep[0], keep[1]] = prediction[:, :, inner[0], inner[1]]
    progress_bar.close()
    return out


class _Forward:
    """The network applied to a numpy batch: on its device and layout, each in-plane flip of the spec's padded to
    its multiple, the outputs flipped back, passed through ``activation`` and averaged."""

    def __init__(self, model, spec: InputSpec, device, layout, activation):
        self.model, self.spec, self.device, self.layout, self.activation = model, spec, device, layout, activation

    def tensor(self, inputs: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(inputs).to(self.device).contiguous(memory_format=self.layout)

    def numpy(self, output: torch.Tensor) -> np.ndarray:
        if self.activation is not None:
            output = self.activation(output)
        return output.float().cpu().numpy()

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        if self.spec.flips == ((),) and self.spec.pad_multiple == 1:
            return self.numpy(self.model(self.tensor(inputs)))
        height, width = inputs.shape[2:]
        multiple, given = self.spec.pad_multiple, torch.from_numpy(inputs)
        padded = inputs.shape[:2] + (-(-height // multiple) * multiple, -(-width // multiple) * multiple)
        summed = 0
        for axes in self.spec.flips:  # each flipped slice zero padded at its end, its answer flipped back
            dims = [2 + a for a in axes]
            batch = torch.zeros(padded)
            batch[:, :, :height, :width] = given.flip(dims) if dims else given
            answer = self.model(batch.to(self.device).contiguous(memory_format=self.layout))[:, :, :height, :width]
            answer = answer if self.activation is None else self.activation(answer)
            summed = summed + (answer.flip(dims) if dims else answer)
        return (summed / len(self.spec.flips)).float().cpu().numpy()


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


class _Source:
    """The network input of a slice-major volume, batch by batch (optionally cropped in-plane)."""

    def __init__(self, spec: InputSpec, t1: np.ndarray, bits, brain, transform: Transform):
        self.spec, self.t1, self.bits, self.brain, self.transform = spec, t1, bits, brain, transform

    def batch(self, start: int, stop: int, window: tuple[slice, slice]) -> np.ndarray:
        place = whole_slices(start, stop, window)
        return stack_slices(self.spec, self.t1, *place, self.transform, self.bits, self.brain)

    def background_slice(self) -> np.ndarray:
        """One slice of pure background, as the network sees it."""
        shape = (1,) + self.t1.shape[1:]
        bits = np.full(shape, BACKGROUND_BITS, np.uint8) if self.spec.tissue_masks else None
        brain = np.zeros(shape, bool) if self.spec.strip else None
        place = whole_slices(0, 1, shape=shape[1:])
        return stack_slices(self.spec, np.zeros(shape, np.float32), *place, self.transform, bits, brain)

    def content(self) -> tuple[np.ndarray, np.ndarray]:
        """Per slice, which rows and which columns hold a voxel whose input differs from background."""
        rows = np.zeros(self.t1.shape[:2], bool)
        cols = np.zeros((self.t1.shape[0], self.t1.shape[2]), bool)
        for start in range(0, self.t1.shape[0], 16):  # in chunks: no full-volume temporaries
            stop = min(start + 16, self.t1.shape[0])
            signal = np.asarray(self.t1[start:stop]) != 0
            if self.spec.strip:
                signal &= np.asarray(self.brain[start:stop], bool)
            if self.spec.tissue_masks:
                signal |= np.asarray(self.bits[start:stop]) != BACKGROUND_BITS
            rows[start:stop], cols[start:stop] = signal.any(axis=2), signal.any(axis=1)
        return rows, cols


def _crop(
    content: tuple[np.ndarray, np.ndarray], low: int, high: int, radius: int | None, background_padding: bool = False
):
    """(window to compute, region to keep) for slices ``low:high``, or ``(None, None)`` if all background.

    Without a finite ``radius`` the window is the whole slice.  With ``background_padding``
    (:class:`~.windowed.WindowedStack`) the window is the region to keep: the content grown by ``radius``;
    otherwise it is grown by ``2 * radius`` and its outer ``radius`` computed with the wrong (zero) padding
    around it.
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
