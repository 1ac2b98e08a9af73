"""Figures (matplotlib, written to PNG without a display)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402

from . import labels

#: One colour per tissue class (the seven exclusive ones; index = bit - 1).
CLASS_COLOURS = ["#8c8c8c", "#f2f2f2", "#4292c6", "#fd8d3c", "#e31a1c", "#41ab5d", "#252525"]


def _save(fig, path: str | Path, dpi: int, rect=None) -> Path:
    """Lay out, write the PNG and free the figure."""
    if rect:
        fig.tight_layout(rect=rect)
    else:
        fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def tissue_class_image(seg: np.ndarray) -> np.ndarray:
    """Index 0..6 of the exclusive tissue class (GM, WM, CSF, subcortical, vessel, cerebellum, unknown)."""
    bits, _ = labels.tissue_bits(seg, np.zeros(seg.shape, bool))
    return labels.exclusive_class(bits).astype(np.int64) - 1


def simulated_subjects_figure(
    subjects: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]], path: str | Path
) -> Path:
    """Mid-axial slices: one row per subject, columns T1w | T2w | tissue classes."""
    rows = len(subjects)
    fig, axes = plt.subplots(rows, 3, figsize=(9, 3.2 * rows), squeeze=False)
    cmap = ListedColormap(CLASS_COLOURS)
    for row, (name, t1, t2, seg) in enumerate(subjects):
        k = t1.shape[2] // 2
        for col, (image, title) in enumerate(((t1, "T1w"), (t2, "T2w"))):
            axes[row, col].imshow(
                image[:, :, k].T, origin="lower", cmap="gray", vmin=0, vmax=np.percentile(image, 99.5)
            )
            axes[row, col].set_title(f"{name}: {title}", fontsize=9)
        axes[row, 2].imshow(
            tissue_class_image(seg[:, :, k]).T,
            origin="lower",
            cmap=cmap,
            vmin=-0.5,
            vmax=len(CLASS_COLOURS) - 0.5,
            interpolation="nearest",
        )
        axes[row, 2].set_title(f"{name}: tissue classes", fontsize=9)
        for ax in axes[row]:
            ax.axis("off")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in CLASS_COLOURS]
    fig.legend(
        handles,
        [n.replace("_", " ") for n in labels.CLASSES[1:]],
        loc="lower center",
        ncol=len(handles),
        fontsize=8,
        frameon=False,
    )
    return _save(fig, path, 80, rect=(0, 0.04, 1, 1))


def learning_curve_figure(history: list[dict], steps: list[dict], path: str | Path) -> Path:
    """Loss per optimizer step (faint), and train / validation loss per epoch."""
    fig, ax = plt.subplots(figsize=(6, 4))
    if steps:
        per_epoch = max(1, len(steps) // max(1, len(history)))
        x = [(int(s["step"]) - 1) / per_epoch + 0.5 for s in steps]
        ax.plot(x, [float(s["loss"]) for s in steps], color="#9ecae1", lw=0.6, label="train (step)")
    epochs = [int(h["epoch"]) for h in history]
    ax.plot(epochs, [float(h["train_loss"]) for h in history], "o-", color="#08519c", label="train (epoch)")
    val = [(int(h["epoch"]), float(h["val_loss"])) for h in history if h.get("val_loss") not in ("", None)]
    if val:
        ax.plot(*zip(*val), "s-", color="#e6550d", label="validation (epoch, eval mode)")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("MSE (normalized units)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path, 90)


def prediction_figure(
    t1: np.ndarray,
    t2: np.ndarray,
    predictions: dict[str, np.ndarray],
    mask: np.ndarray,
    path: str | Path,
    axis: int = 2,
) -> Path:
    """Mid slice: T1w | true T2w | each prediction | |error| of the first prediction (brain-median units)."""
    k = t1.shape[axis] // 2
    take = lambda v: np.take(v, k, axis=axis).T
    brain = take(mask) > 0
    scale = lambda v: take(v) / np.median(take(v)[brain]) if brain.any() else take(v)
    panels = [("T1w", scale(t1)), ("true T2w", scale(t2))] + [
        (f"predicted: {n}", scale(v)) for n, v in predictions.items()
    ]
    first = next(iter(predictions))
    error = np.abs(scale(predictions[first]) - scale(t2)) * brain
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(3 * (len(panels) + 1), 3.4))
    vmax = np.percentile(scale(t2)[brain], 99.5) if brain.any() else None
    for ax, (title, image) in zip(axes, panels):
        ax.imshow(image, origin="lower", cmap="gray", vmin=0, vmax=vmax if title != "T1w" else None)
        ax.set_title(title, fontsize=9)
    shown = axes[-1].imshow(
        error, origin="lower", cmap="magma", vmin=0, vmax=np.percentile(error[brain], 99) if brain.any() else None
    )
    axes[-1].set_title(f"|error| {first} (in brain)", fontsize=9)
    fig.colorbar(shown, ax=axes[-1], fraction=0.046)
    for ax in axes:
        ax.axis("off")
    return _save(fig, path, 80)


def patch_grid_figure(rows: list[list[tuple[str, np.ndarray]]], path: str | Path, title: str = "") -> Path:
    """One row per patch, one column per image (the paper's Figures 4 and 5); T2w columns share a scale."""
    n_rows, n_cols = len(rows), len(rows[0])
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.2 * n_cols, 2.2 * n_rows + 0.4), squeeze=False)
    for r, row in enumerate(rows):
        t2 = row[1][1]
        low, high = np.percentile(t2, [1, 99.5])
        for c, (label, image) in enumerate(row):
            limits = {} if c == 0 else {"vmin": low, "vmax": high}
            axes[r, c].imshow(image.T, origin="lower", cmap="gray", **limits)
            axes[r, c].axis("off")
            if r == 0:
                axes[r, c].set_title(label, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path, 80)


def per_subject_figure(values: dict[str, dict[str, float]], path: str | Path, ylabel: str, title: str = "") -> Path:
    """One column per subject, one marker per method (``values[subject][method]``), lines joining a method."""
    subjects = list(values)
    methods = list(next(iter(values.values())))
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(subjects) + 2), 3.6))
    for i, method in enumerate(methods):
        ys = [values[s].get(method) for s in subjects]
        ax.plot(range(len(subjects)), ys, "o-", lw=0.8, ms=6, label=method, color=plt.cm.tab10(i))
    ax.set_xticks(range(len(subjects)), subjects, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path, 90)


def masks_figure(t1: np.ndarray, seg: np.ndarray, brain: np.ndarray, zooms, path: str | Path, title: str = "") -> Path:
    """Quality control of masks: the T1w on three planes through the brain's centre, the tissue classes
    overlaid and the brain mask's outline (red)."""
    classes = np.where(brain, tissue_class_image(seg), -1)
    centre = [int(round(np.mean(axis))) for axis in np.nonzero(brain)] if brain.any() else [n // 2 for n in t1.shape]
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.4))
    shown = t1[brain] if brain.any() else t1.ravel()
    low, limit = np.percentile(shown, [1, 99])  # any sign and scale (a T1w may hold negative values)
    limit = limit if limit > low else low + 1
    colours = ListedColormap(CLASS_COLOURS)
    for axis, ax in enumerate(axes):
        cut = [slice(None)] * 3
        cut[axis] = centre[axis]
        plane = tuple(cut)
        others = [z for i, z in enumerate(zooms) if i != axis]
        ax.imshow(t1[plane].T, cmap="gray", origin="lower", vmin=low, vmax=limit, aspect=others[1] / others[0])
        overlay = np.ma.masked_less(classes[plane].T, 0)
        ax.imshow(
            overlay,
            cmap=colours,
            vmin=0,
            vmax=len(CLASS_COLOURS) - 1,
            alpha=0.35,
            origin="lower",
            aspect=others[1] / others[0],
            interpolation="nearest",
        )
        ax.contour(brain[plane].T.astype(float), [0.5], colors="red", linewidths=0.8)
        ax.set_title(f"voxel axis {axis}, index {centre[axis]}", fontsize=9)
        ax.axis("off")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in CLASS_COLOURS]
    fig.legend(
        handles,
        [name.replace("_", " ") for name in labels.CLASSES[1:]],
        loc="lower center",
        ncol=7,
        fontsize=8,
        frameon=False,
    )
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path, 80, rect=(0, 0.06, 1, 0.95))


def synthesis_mosaic(
    t1: np.ndarray, t2w: np.ndarray, brain: np.ndarray, uncertainty: np.ndarray, zooms, out, columns: int = 7
):
    """A report's picture of one synthesis (volumes in RAS order) as a PNG into ``out`` (a path or a binary file):
    ``columns`` axial slices evenly through the brain, rows the T1w with the brain mask's outline (red), the
    synthetic T2w, and the uncertainty map (hot, over the brain; its colour bar in the T2w's units)."""
    present = np.flatnonzero(brain.any(axis=(0, 1))) if brain.any() else np.arange(t1.shape[2])
    ks = np.linspace(present[0], present[-1], columns + 2)[1:-1].round().astype(int)
    inside = brain if brain.any() else np.ones(brain.shape, bool)
    t1_range = np.percentile(t1[inside], [1, 99.5])
    t2_high = float(np.percentile(t2w[inside], 99.5)) or 1.0
    u_high = float(np.percentile(uncertainty[inside], 99)) or 1.0
    aspect = zooms[1] / zooms[0]
    fig, axes = plt.subplots(3, columns, figsize=(1.9 * columns, 6.4), squeeze=False)
    for column, k in enumerate(ks):
        plane = lambda v, k=k: v[:, :, k].T  # noqa: E731 - x to the right, y up (origin lower)
        axes[0, column].imshow(
            plane(t1), cmap="gray", origin="lower", vmin=t1_range[0], vmax=t1_range[1], aspect=aspect
        )
        if brain[:, :, k].any():
            axes[0, column].contour(plane(brain.astype(np.float32)), levels=[0.5], colors="red", linewidths=0.7)
        axes[1, column].imshow(plane(t2w), cmap="gray", origin="lower", vmin=0, vmax=t2_high, aspect=aspect)
        shown = np.ma.masked_where(~plane(brain), plane(uncertainty))
        axes[2, column].imshow(
            plane(t1), cmap="gray", origin="lower", vmin=t1_range[0], vmax=t1_range[1], aspect=aspect
        )
        heat = axes[2, column].imshow(shown, cmap="hot", origin="lower", vmin=0, vmax=u_high, aspect=aspect)
        axes[0, column].set_title(f"z {k}", fontsize=8)
    for row, label in enumerate(("T1w + brain mask", "synthetic T2w", "uncertainty")):
        axes[row, 0].set_ylabel(label, fontsize=9)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(heat, ax=axes[2, :].tolist(), fraction=0.02, pad=0.01)
    fig.savefig(out, dpi=72, bbox_inches="tight", format="png")
    plt.close(fig)
    return out
