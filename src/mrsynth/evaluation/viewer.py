"""An interactive viewer page: T1w, predicted T2w, reference T2w and error map in NiiVue.

One self-contained HTML file (no network at view time): NiiVue (``@niivue/niivue``, BSD-2-Clause,
vendored in ``assets/niivue/`` with its licence) is inlined, and the volumes are embedded as
gzipped int16 NIfTI (base64).  Four views in three planes with linked crosshairs, window/level
per view (sliders, or right-drag), crosshair sliders, and the per-tissue error table beside them.

Size: every volume is cropped to the brain mask's bounding box (plus a margin; without a mask, to
where the prediction or T1w has signal), then block-averaged by the smallest integer factor that
brings it to ``max_voxels`` (4 million by default: a 0.7 mm HCP brain is shown at 1.4 mm, a 1 mm
brain at full resolution).  A page with four HCP-sized volumes weighs about 10-20 MB; the size is
printed and written on the page.

The error map is prediction minus reference, each divided by its own 99th percentile inside the
brain (the scale of ``psnr_p99``, :mod:`mrsynth.metrics`), inside the brain mask only.
"""

from __future__ import annotations

import base64
import gzip
import html
import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import nibabel as nib
import numpy as np

from .. import labels
from ..atomic import check_writable, write_text
from ..data import PreparedSubject
from ..errors import InputError
from ..io import check_same_grid, read_volume
from .metrics import psnr_p99

MAX_VOXELS = 4_000_000
MARGIN_VOXELS = 4
INT16_MAX = 32767


@dataclass
class ViewerInput:
    """The volumes of one page, on one grid; only ``pred`` is required."""

    pred: np.ndarray
    affine: np.ndarray
    t1: np.ndarray | None = None
    ref: np.ndarray | None = None
    mask: np.ndarray | None = None  # bool
    seg: np.ndarray | None = None  # FreeSurfer codes
    bits: np.ndarray | None = None  # or the tissue bit field of a prepared subject (mrsynth.labels)
    made_by: str = ""  # what made the prediction (its NIfTI header's stamp)
    uncertainty: np.ndarray | None = None  # a voxel-wise uncertainty map of the prediction (mrsynth.inference)


def crop_box(page: ViewerInput) -> tuple[slice, ...]:
    """The brain mask's bounding box plus a margin; without a mask, where the volumes have signal."""
    if page.mask is not None and page.mask.any():
        inside = page.mask
    else:
        shown = [v for v in (page.pred, page.t1) if v is not None]
        inside = np.zeros(page.pred.shape, bool)
        for volume in shown:
            finite = np.nan_to_num(volume.astype(np.float32))
            inside |= np.abs(finite) > 0.02 * max(float(np.percentile(np.abs(finite), 99)), 1e-12)
        if not inside.any():
            inside[:] = True
    box = []
    for axis in range(inside.ndim):
        others = tuple(a for a in range(inside.ndim) if a != axis)
        present = np.flatnonzero(inside.any(axis=others))
        box.append(
            slice(
                max(int(present[0]) - MARGIN_VOXELS, 0), min(int(present[-1]) + 1 + MARGIN_VOXELS, inside.shape[axis])
            )
        )
    return tuple(box)


def shrink_factor(shape: tuple[int, ...], max_voxels: int = MAX_VOXELS) -> int:
    """The smallest integer block size that brings ``shape`` to at most ``max_voxels``."""
    factor = 1
    while math.prod(math.ceil(n / factor) for n in shape) > max_voxels:
        factor += 1
    return factor


def reduce(volume: np.ndarray, box: tuple[slice, ...], factor: int) -> np.ndarray:
    """Crop to ``box`` and average blocks of ``factor``^3 voxels (edge blocks padded by repetition)."""
    cropped = np.asarray(volume[box], np.float32)
    if factor == 1:
        return cropped
    padding = [(0, -n % factor) for n in cropped.shape]
    padded = np.pad(cropped, padding, mode="edge")
    blocks = padded.reshape(sum(((n // factor, factor) for n in padded.shape), ()))
    return blocks.mean(axis=(1, 3, 5))


def reduced_affine(affine: np.ndarray, box: tuple[slice, ...], factor: int) -> np.ndarray:
    """The affine of :func:`reduce`'s output: the first block's centre, voxels ``factor`` times larger."""
    start = np.array([s.start for s in box], float) + (factor - 1) / 2
    shift = np.eye(4)
    shift[:3, 3] = start
    return affine @ shift @ np.diag([factor, factor, factor, 1.0])


def encode(volume: np.ndarray, affine: np.ndarray) -> str:
    """A volume as a gzipped int16 NIfTI (scl_slope carries the scale), base64."""
    peak = float(np.max(np.abs(volume))) or 1.0
    slope = peak / INT16_MAX
    image = nib.Nifti1Image(np.round(volume / slope).astype(np.int16), affine)
    image.header.set_slope_inter(slope, 0.0)
    image.header.set_xyzt_units("mm")
    return base64.b64encode(gzip.compress(image.to_bytes(), compresslevel=6)).decode("ascii")


def brain_p99(volume: np.ndarray, brain: np.ndarray) -> float:
    return float(np.percentile(volume[brain], 99))


def error_map(page: ViewerInput) -> np.ndarray | None:
    """Prediction minus reference in each one's brain 99th-percentile units, inside the brain; 0 elsewhere."""
    if page.ref is None or page.mask is None or not page.mask.any():
        return None
    brain = page.mask
    error = page.pred / brain_p99(page.pred, brain) - page.ref / brain_p99(page.ref, brain)
    return np.where(brain, error, 0.0).astype(np.float32)


def error_table(page: ViewerInput, error: np.ndarray | None) -> list[list[str]]:
    """Per-tissue error rows (header first) of :func:`error_map`'s ``error``: voxels, mean, MAE, RMSE."""
    if error is None:
        return []
    brain = page.mask
    rows = [["region", "voxels", "mean error", "MAE", "RMSE"]]
    regions = {"brain": brain}
    bits = (
        page.bits
        if page.bits is not None
        else (labels.tissue_bits(page.seg, brain)[0] if page.seg is not None else None)
    )
    if bits is not None:
        regions.update({name: labels.has_class(bits, name) & brain for name in labels.CLASSES if name != "brain"})
    for name, members in regions.items():
        if members.any():
            values = error[members].astype(np.float64)
            rows.append(
                [
                    name.replace("_", " "),
                    f"{members.sum():,}",
                    f"{values.mean():+.3f}",
                    f"{np.abs(values).mean():.3f}",
                    f"{np.sqrt(np.mean(values**2)):.3f}",
                ]
            )
    return rows


def _window(volume: np.ndarray, symmetric: bool) -> tuple[list[float], list[float]]:
    """(slider range, initial window) of one shown volume; for the error map, of its magnitude."""
    if symmetric:
        magnitude = np.abs(volume[volume != 0])
        if not magnitude.size:
            return [0.0, 1.0], [0.02, 1.0]
        peak = float(magnitude.max())  # coloured from the median error up: the larger half of the errors
        return [0.0, peak], [float(np.median(magnitude)), float(np.percentile(magnitude, 99))]
    low, high = float(volume.min()), float(volume.max())
    if high <= low:
        high = low + 1.0
    return [low, high], [float(np.percentile(volume, 0.5)), max(float(np.percentile(volume, 99.5)), low + 1e-6)]


def _specs(page: ViewerInput, error: np.ndarray | None, max_voxels: int) -> tuple[list[dict], tuple[int, ...], int]:
    box = crop_box(page)
    factor = shrink_factor(tuple(s.stop - s.start for s in box), max_voxels)
    affine = reduced_affine(page.affine, box, factor)
    shown = [
        ("t1", "T1w (input)", page.t1, "gray"),
        ("pred", "T2w predicted", page.pred, "gray"),
        ("ref", "T2w reference", page.ref, "gray"),
        ("error", "error: predicted - reference (p99 units), over the reference", error, "warm"),
        ("uncertainty", "uncertainty of the prediction (high: trust it least)", page.uncertainty, "warm"),
    ]
    specs = []
    for name, label, volume, colormap in shown:
        if volume is None:
            continue
        small = reduce(volume, box, factor)
        symmetric = name == "error"
        value_range, window = _window(small, symmetric)
        specs.append(
            {
                "name": name,
                "label": label,
                "data": encode(small, affine),
                "colormap": colormap,
                "colormapNegative": "winter" if symmetric else "",
                "symmetric": symmetric,
                "range": value_range,
                "window": window,
                "underlay": "ref" if symmetric else "",
            }
        )
    return specs, small.shape, factor


def _table_html(rows: list[list[str]], score: float | None) -> str:
    if not rows:
        return "<p class='meta'>No reference and brain mask given: no error table.</p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows[1:])
    caption = "<h2>Error by tissue</h2><p class='meta'>In units of each volume's brain 99th percentile"
    caption += f"; brain psnr_p99 {score:.2f} dB" if score is not None else ""
    return caption + f".</p><table id='errors'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def build_page(page: ViewerInput, title: str = "mrsynth prediction", max_voxels: int = MAX_VOXELS) -> str:
    """The whole HTML page as text."""
    error = error_map(page)
    specs, shape, factor = _specs(page, error, max_voxels)
    score = psnr_p99(page.pred, page.ref, page.mask) if page.ref is not None and page.mask is not None else None
    zooms = np.sqrt((page.affine[:3, :3] ** 2).sum(axis=0)) * factor
    meta = (
        f"{len(specs)} volumes of {' x '.join(map(str, shape))} voxels at "
        f"{' x '.join(f'{z:.2g}' for z in zooms)} mm (cropped to the brain"
        f"{f', averaged over blocks of {factor}^3 voxels' if factor > 1 else ''})."
    )
    if page.made_by:
        meta += f" Predicted by {page.made_by}."
    template = resources.files("mrsynth").joinpath("templates/viewer.html").read_text()
    niivue = resources.files("mrsynth").joinpath("assets/niivue/niivue.umd.js").read_text()
    volumes = json.dumps(specs).replace("</", "<\\/")
    return (
        template.replace("__TITLE__", html.escape(title))
        .replace("__META__", html.escape(meta))
        .replace("__TABLE__", _table_html(error_table(page, error), score))
        .replace("__VOLUMES__", volumes)
        .replace("__NIIVUE__", niivue.replace("</script", "<\\/script"))
    )


def prepared_page(prediction: np.ndarray, subject: PreparedSubject) -> ViewerInput:
    """A prepared subject's page: its T1w, T2w (when present), brain and tissue classes beside ``prediction``."""
    volumes = subject.native()
    return ViewerInput(prediction, volumes.affine, volumes.t1, volumes.t2, volumes.brain, bits=volumes.bits)


def _read(path: Path | None, grid, reference: Path, dtype=np.float32) -> np.ndarray | None:
    if path is None:
        return None
    data, image = read_volume(Path(path))
    check_same_grid(data.shape, image.affine, grid, Path(path), reference, "prediction")
    if data.ndim != 3:
        raise InputError(f"expected a 3D volume, got shape {data.shape}", path)
    if dtype is np.float32 and not np.isfinite(data).all():
        raise InputError("holds NaN or Inf values", path)
    return np.asarray(data, dtype)


def _stamp(image) -> str:
    """What made a prediction, as mrsynth wrote it into the NIfTI header (empty for other files)."""
    try:
        text = bytes(image.header["descrip"]).split(b"\0")[0].decode("ascii", "replace")
    except (KeyError, TypeError, ValueError):
        return ""
    return text if text.startswith("mrsynth") else ""


def load_page(
    pred: Path, t1: Path | None = None, ref: Path | None = None, mask: Path | None = None, seg: Path | None = None
) -> ViewerInput:
    """Read and check the page's files (one grid; a mask with a reference for the error map)."""
    data, image = read_volume(Path(pred))
    if data.ndim != 3:
        raise InputError(f"expected a 3D volume, got shape {data.shape}", pred)
    if not np.isfinite(data).all():
        raise InputError("holds NaN or Inf values", pred)
    grid = (data.shape, image.affine)
    page = ViewerInput(
        np.asarray(data, np.float32),
        image.affine,
        _read(t1, grid, pred),
        _read(ref, grid, pred),
        None if mask is None else _read(mask, grid, pred, np.float32) > 0,
        _read(seg, grid, pred, np.int32),
        made_by=_stamp(image),
    )
    if page.mask is not None and not page.mask.any():
        raise InputError("the brain mask is empty", mask)
    if page.seg is not None and page.mask is None:
        raise InputError("the per-tissue table needs the brain mask too (--mask)", seg)
    return page


def write_page(out: Path, page: ViewerInput, title: str = "mrsynth prediction", max_voxels: int = MAX_VOXELS) -> Path:
    """Write the page atomically; returns its path."""
    if not Path(out).name.endswith((".html", ".htm")):
        raise InputError("the viewer page must be named .html", out)
    check_writable(out)
    return write_text(out, build_page(page, title, max_voxels))
