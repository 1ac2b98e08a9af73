"""``mrsynth masks``: a T1w's automatic masks written beside a record of how they were made."""

from __future__ import annotations

import json
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from .. import labels
from ..atomic import check_writable, remove_leftovers, write_file, write_text
from ..errors import InputError
from ..figures import masks_figure
from ..io.subjects import Subject, load_subject
from ..logs import log
from .sources import compute_masks, describe

#: Files written by :func:`write_masks`.
OUTPUTS = {
    "brain": "brainmask.nii.gz",
    "seg": "wmparc.nii.gz",
    "classes": "tissue_classes.nii.gz",
    "record": "masks.json",
    "figure": "masks_qc.png",
}


def class_volume(seg: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """The seven exclusive classes as one label volume: ``labels.CLASSES[i]`` is value ``i`` (0 outside the brain)."""
    return np.where(brain, labels.exclusive_class(labels.tissue_bits(seg, brain)[0]), 0).astype(np.uint8)


def write_masks(
    t1_path: str | Path, out_dir: str | Path, figure: bool = True, method: str | None = None
) -> dict[str, Path]:
    """``mrsynth masks``: compute a T1w's masks (by ``method``, default ``DEFAULT_METHOD``) and write them beside
    a record of how (on the T1w's grid).

    Writes ``brainmask.nii.gz`` (0/1), ``wmparc.nii.gz`` (FreeSurfer codes),
    ``tissue_classes.nii.gz`` (1 grey matter ... 7 unknown, as ``labels.CLASSES``; 0 outside the
    brain), ``masks.json`` and the QC figure ``masks_qc.png``.  The output folder is checked before the
    masks are computed (a minute's work lost to an unwritable folder otherwise), everything is computed before the
    first file is written, and each file is written atomically.
    """
    t1_path, out_dir = Path(t1_path), Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError("exists and is not a folder", out_dir)
    for name in OUTPUTS.values():
        check_writable(out_dir / name)
    started = time.perf_counter()
    volumes = load_subject(Subject(id="input", t1=t1_path, seg=None, mask=None), need_labels=False)
    for note in volumes.notes:
        log.warning(note)
    result = compute_masks(volumes.t1, volumes.affine, source=t1_path, method=method)
    seconds = time.perf_counter() - started
    header = nib.load(str(t1_path)).header
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_leftovers(out_dir)
    paths = {key: out_dir / name for key, name in OUTPUTS.items()}

    def save(key: str, volume: np.ndarray, dtype) -> None:
        image = nib.Nifti1Image(volume.astype(dtype), volumes.affine, header=header)
        image.set_data_dtype(dtype)
        image.header.set_slope_inter(1.0, 0.0)
        write_file(paths[key], lambda temporary: nib.save(image, str(temporary)))

    save("brain", result.brain, np.uint8)
    save("seg", result.seg, np.int32)
    save("classes", class_volume(result.seg, result.brain), np.uint8)
    record = {
        "input": str(t1_path.resolve()),
        "masks": result.provenance,
        "seconds": round(seconds, 1),
        "warnings": result.warnings,
        "brain_ml": float(result.brain.sum() * np.prod(volumes.zooms) / 1000),
        "tissue_classes": {str(i): name for i, name in enumerate(labels.CLASSES) if i},
        "class_voxels": labels.class_voxel_counts(labels.tissue_bits(result.seg, result.brain)[0]),
    }
    write_text(paths["record"], json.dumps(record, indent=1) + "\n")
    if figure:
        write_file(
            paths["figure"],
            lambda temporary: masks_figure(
                volumes.t1,
                result.seg,
                result.brain,
                volumes.zooms,
                temporary,
                f"{t1_path.name}: automatic masks ({describe(result.provenance)})",
            ),
        )
    else:
        del paths["figure"]
    return paths
