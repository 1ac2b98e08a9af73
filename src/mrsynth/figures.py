"""Figures (matplotlib, written to PNG without a display)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402

from . import labels  # noqa: E402

#: One colour per tissue class (the seven exclusive ones; index = bit - 1).
CLASS_COLOURS = ["#8c8c8c", "#f2f2f2", "#4292c6", "#fd8d3c", "#e31a1c", "#41ab5d", "#252525"]


def tissue_class_image(seg: np.ndarray) -> np.ndarray:
    """Index 0..6 of the exclusive tissue class (GM, WM, CSF, subcortical, vessel, cerebellum, unknown)."""
    bits, _ = labels.tissue_bits(seg, np.zeros(seg.shape, bool))
    return np.argmax([(bits >> b) & 1 for b in range(1, len(labels.CLASSES))], axis=0)


def simulated_subjects_figure(subjects: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]],
                              path: str | Path) -> Path:
    """Mid-axial slices: one row per subject, columns T1w | T2w | tissue classes."""
    rows = len(subjects)
    fig, axes = plt.subplots(rows, 3, figsize=(9, 3.2 * rows), squeeze=False)
    cmap = ListedColormap(CLASS_COLOURS)
    for row, (name, t1, t2, seg) in enumerate(subjects):
        k = t1.shape[2] // 2
        for col, (image, title) in enumerate(((t1, "T1w"), (t2, "T2w"))):
            axes[row, col].imshow(image[:, :, k].T, origin="lower", cmap="gray",
                                  vmin=0, vmax=np.percentile(image, 99.5))
            axes[row, col].set_title(f"{name}: {title}", fontsize=9)
        axes[row, 2].imshow(tissue_class_image(seg[:, :, k]).T, origin="lower", cmap=cmap,
                            vmin=-0.5, vmax=len(CLASS_COLOURS) - 0.5, interpolation="nearest")
        axes[row, 2].set_title(f"{name}: tissue classes", fontsize=9)
        for ax in axes[row]:
            ax.axis("off")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in CLASS_COLOURS]
    fig.legend(handles, [n.replace("_", " ") for n in labels.CLASSES[1:]], loc="lower center",
               ncol=len(handles), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    path = Path(path)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
