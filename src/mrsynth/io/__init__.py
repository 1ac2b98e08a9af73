"""Files in: NIfTI reading and writing, subjects found in a data folder (HCP, BIDS, a CSV manifest) and validated.

:mod:`.nifti` reads and writes NIfTI (ISA-L gzip) and names array axes; :mod:`.subjects` discovers a layout's
subjects and loads them, refusing bad input with the file and the problem; :mod:`.fixtures` writes the tiny
generated subjects that the tests and ``mrsynth fixtures`` use.
"""

from . import nifti
from .nifti import NIFTI_SUFFIXES, check_affine, read_volume, resolve_axis
from .subjects import (
    HCP_FOLDER,
    HCP_NAMES,
    LAYOUTS,
    Subject,
    SubjectVolumes,
    check_same_grid,
    detect_layout,
    discover,
    load_subject,
)

__all__ = [
    "HCP_FOLDER",
    "HCP_NAMES",
    "LAYOUTS",
    "NIFTI_SUFFIXES",
    "Subject",
    "SubjectVolumes",
    "check_affine",
    "check_same_grid",
    "detect_layout",
    "discover",
    "load_subject",
    "nifti",
    "read_volume",
    "resolve_axis",
]
