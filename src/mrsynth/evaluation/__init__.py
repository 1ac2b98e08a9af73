"""Evaluation: predicted volumes scored against acquired T2w, and looked at.

:mod:`.metrics` computes every score of one volume (brain-masked MSE, PSNR, scale-free PSNR, SSIM, per tissue);
:mod:`.evaluate` scores files, folders and prepared subjects one way; :mod:`.viewer` writes an interactive page
(NiiVue) with the error map.
"""

from .evaluate import Reference, evaluate_file, evaluate_folder, references, score
from .metrics import INTENSITY_SCALES, evaluate_volume, psnr_optimal, psnr_p99, summarize
from .viewer import load_page, prepared_page, write_page

__all__ = [
    "Reference",
    "INTENSITY_SCALES",
    "evaluate_file",
    "evaluate_folder",
    "evaluate_volume",
    "load_page",
    "prepared_page",
    "psnr_optimal",
    "psnr_p99",
    "references",
    "score",
    "summarize",
    "write_page",
]
