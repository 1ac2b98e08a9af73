"""The same within-subject run on the HCP templates with the paper's normalization (training-set mean subtracted).

Same data, split, network, epochs and learning rate as `hcp_within_subject`; only the
normalization differs, so losses are in the templates' raw T2w intensity units.
"""

from __future__ import annotations

from .hcp_within_subject import markdown
from .hcp_within_subject import run as _run

__all__ = ["run", "markdown"]


def run() -> dict:
    return _run("paper")
