"""Simulation: physics-based synthetic T1w/T2w subjects from real anatomy (``mrsynth simulate``), the embedded
default data.

:mod:`.anatomy` says where tissues are (the MNI152 template, or FreeSurfer label maps); :mod:`.tissues` and
:mod:`.signal` what they look like (relaxation values, MPRAGE and spin-echo signal, bias field, noise);
:mod:`.sequences` adds the spoiled gradient echo and 1.5 T relaxation; :mod:`.pathology` draws MS-like lesions and
tumour-like masses; :mod:`.subject` makes one subject from an anatomy and a seed; :mod:`.dataset` writes datasets
in the HCP layout, and their figure; :mod:`.engine` makes the pretraining's subjects (any T1w acquisition, one
canonical T2w); :mod:`.realism` measures contrasts to compare with real templates.
"""

from .anatomy import Anatomy, default_anatomy, label_map_anatomy
from .dataset import simulate_dataset, write_figure, write_hcp_subject
from .realism import contrast_ratios, within_tissue_statistics
from .subject import SimulatedSubject, Variation, simulate_subject

__all__ = [
    "Anatomy",
    "SimulatedSubject",
    "Variation",
    "contrast_ratios",
    "within_tissue_statistics",
    "default_anatomy",
    "label_map_anatomy",
    "simulate_dataset",
    "simulate_subject",
    "write_figure",
    "write_hcp_subject",
]
