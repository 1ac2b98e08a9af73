"""Prepared-subject cache: validated subjects as memory-mappable arrays.

One folder per subject::

    CACHE/<subject>/t1.npy        float32, slice-major (the slicing axis first)
    CACHE/<subject>/t2.npy        float32, when the subject has a T2w
    CACHE/<subject>/tissue.npy    uint8 bit field of the eight classes (mrsynth.labels)
    CACHE/<subject>/subject.json  sources (path, size, mtime), affine, shapes,
                                  orientation, intensity statistics, class volumes

Volumes are stored with the slicing axis first so that a 2D patch is a
contiguous read from the memory map.  A subject folder is written under a
temporary name and renamed into place, so a cache folder is either complete or
absent.  A re-run skips subjects whose sources (size and modification time),
format and label table are unchanged and whose arrays open with the recorded
shapes; anything else is rebuilt.
"""

from __future__ import annotations

import json
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from .. import labels
from ..atomic import building_folder, remove_leftovers
from ..errors import InputError
from ..io import Subject, SubjectVolumes, load_subject, resolve_axis
from ..logs import bar, log
from ..masks import check_source, compute_masks
from ..networks.normalization import intensity_stats

FORMAT_VERSION = 1
META_NAME = "subject.json"


class UnknownLabelWarning(UserWarning):
    """Segmentation codes missing from the label table were classed ``unknown``."""


@dataclass
class PreparedSubject:
    """A subject in the cache; arrays are opened as read-only memory maps on demand."""

    folder: Path
    meta: dict

    @classmethod
    def open(cls, folder: str | Path) -> "PreparedSubject":
        """Open a prepared subject, checking its record and that every array is whole."""
        folder = Path(folder)
        try:
            meta = json.loads((folder / META_NAME).read_text())
            shape = tuple(int(n) for n in meta["stored_shape"])
            names = ["t1", "tissue"] + (["t2"] if "t2" in meta["stats"] else [])
            str(meta["id"]), int(meta["axis"]), meta["affine"], meta["stats"]["t1"]  # raise if missing or mistyped
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise InputError(
                f"not a prepared subject, or its {META_NAME} is damaged ({type(error).__name__}: "
                f"{error}); prepare it again",
                folder,
            ) from None
        subject = cls(folder, meta)
        for name in names:
            found = subject.array(name).shape
            if found != shape:
                raise InputError(f"{name}.npy has shape {found}, its record says {shape}: prepare it again", folder)
        return subject

    @property
    def id(self) -> str:
        return self.meta["id"]

    @property
    def has_t2(self) -> bool:
        return "t2" in self.meta["stats"]

    @property
    def stored_shape(self) -> tuple[int, int, int]:
        return tuple(self.meta["stored_shape"])

    @property
    def stats(self) -> dict:
        return self.meta["stats"]

    def array(self, name: str) -> np.ndarray:
        """``t1``, ``t2`` or ``tissue`` as a read-only memory map (slice-major)."""
        path = self.folder / f"{name}.npy"
        try:
            return np.load(path, mmap_mode="r")
        except (OSError, ValueError, EOFError) as error:  # missing, truncated, not an array
            raise InputError(f"unreadable prepared array ({error}): prepare the subject again", path) from None

    @property
    def axis_request(self) -> str:
        """The slicing axis as asked for at ``prepare`` (``axial``, ``coronal``, ``sagittal`` or 0/1/2)."""
        return self.meta["axis_request"]

    @property
    def affine(self) -> np.ndarray:
        return np.asarray(self.meta["affine"])

    def to_native(self, volume: np.ndarray) -> np.ndarray:
        """Move a slice-major volume back to the source file's axis order."""
        return np.moveaxis(volume, 0, self.meta["axis"])

    def native(self) -> "NativeVolumes":
        """T1w, T2w (when present) and tissue bits in the source file's axis order, read into memory."""
        read = lambda name: self.to_native(np.asarray(self.array(name)))
        return NativeVolumes(
            self.id, read("t1"), read("t2") if self.has_t2 else None, read("tissue"), self.affine, str(self.folder)
        )


@dataclass
class NativeVolumes:
    """A prepared subject's volumes on the source T1w's grid and axis order."""

    id: str
    t1: np.ndarray
    t2: np.ndarray | None
    bits: np.ndarray  # uint8 tissue bit field (mrsynth.labels)
    affine: np.ndarray
    source: str

    @property
    def brain(self) -> np.ndarray:
        """The brain mask (bool)."""
        return labels.in_brain(self.bits)


def is_prepared_cache(folder: str | Path) -> bool:
    """Whether ``folder`` holds prepared subjects (rather than raw data in some layout)."""
    return bool(_subject_folders(Path(folder)))


def _subject_folders(cache_dir: Path) -> list[Path]:
    if not cache_dir.is_dir():
        return []
    return sorted(p.parent for p in cache_dir.glob(f"*/{META_NAME}") if not p.parent.name.startswith("."))


def list_prepared(cache_dir: str | Path) -> list[PreparedSubject]:
    """Every prepared subject in ``cache_dir``, sorted by id."""
    cache_dir = Path(cache_dir)
    if not cache_dir.is_dir():
        raise InputError("prepared cache folder not found", cache_dir)
    folders = _subject_folders(cache_dir)
    if not folders:
        raise InputError("no prepared subjects in this folder (run `mrsynth prepare` first)", cache_dir)
    return [PreparedSubject.open(f) for f in folders]


# --------------------------------------------------------------------------- preparing


@dataclass
class PrepareResult:
    id: str
    status: str  # "prepared", "up-to-date" or "failed"
    message: str = ""
    unknown_codes: list[int] = field(default_factory=list)


def source_record(subject: Subject) -> dict:
    """Path, size and modification time of every source file (for staleness checks)."""
    record = {}
    for role, path in subject.sources().items():
        stat = path.stat() if path.exists() else None
        record[role] = {
            "path": str(path.resolve()),
            "size": stat.st_size if stat else None,
            "mtime_ns": stat.st_mtime_ns if stat else None,
        }
    return record


def is_up_to_date(folder: Path, subject: Subject, axis: str | int, masks: str = "files") -> bool:
    """Whether ``folder`` holds a complete, current preparation of ``subject``."""
    try:
        meta = PreparedSubject.open(folder).meta
    except InputError:
        return False
    return (
        meta.get("format") == FORMAT_VERSION
        and meta.get("label_table") == labels.TABLE_VERSION
        and meta.get("axis_request") == str(axis)
        and masks_source(meta) == check_source(masks)
        and meta.get("sources") == source_record(subject)
    )


def masks_source(meta: dict) -> str:
    """Where a prepared subject's brain and tissue masks came from: ``files`` or the automatic method's name
    (:data:`mrsynth.masks.MASK_METHODS`)."""
    return (meta.get("masks") or {}).get("method", "files")


def _metadata(vols: SubjectVolumes, axis_request: str | int, axis: int, bits, unknown, masks: dict) -> dict:
    stored_shape = (vols.t1.shape[axis],) + tuple(n for i, n in enumerate(vols.t1.shape) if i != axis)
    stats = {"t1": intensity_stats(vols.t1, vols.mask)}
    if vols.t2 is not None:
        stats["t2"] = intensity_stats(vols.t2, vols.mask)
    return {
        "format": FORMAT_VERSION,
        "label_table": labels.TABLE_VERSION,
        "id": vols.subject.id,
        "sources": source_record(vols.subject),
        "shape": list(vols.t1.shape),
        "voxel_size": list(vols.zooms),
        "affine": vols.affine.tolist(),
        "orientation": "".join(nib.aff2axcodes(vols.affine)),
        "axis_request": str(axis_request),
        "axis": axis,
        "stored_shape": list(stored_shape),
        "stats": stats,
        "class_voxels": labels.class_voxel_counts(bits),
        "unknown_codes": unknown,
        "masks": masks,
    }


def _write_array(folder: Path, name: str, volume: np.ndarray, axis: int) -> None:
    np.save(folder / f"{name}.npy", np.ascontiguousarray(np.moveaxis(volume, axis, 0)))


def prepare_subject(
    subject: Subject, cache_dir: str | Path, axis: str | int = "axial", force: bool = False, masks: str = "files"
) -> PrepareResult:
    """Validate ``subject`` and write it to ``cache_dir/<id>`` atomically.

    ``masks`` other than ``files`` (``auto`` or a method of :mod:`mrsynth.masks`): the brain mask and
    segmentation are computed from the T1w, whatever files the subject has; the subject records how.
    Never raises for bad input: the problem is returned in the result, and nothing
    is written for that subject.
    """
    cache_dir = Path(cache_dir)
    final = cache_dir / subject.id
    if not force and is_up_to_date(final, subject, axis, masks):
        return PrepareResult(subject.id, "up-to-date")
    try:
        record, method = {"method": "files"}, check_source(masks)
        if method != "files":
            vols = load_subject(subject, need_labels=False)
            automatic = compute_masks(vols.t1, vols.affine, source=subject.t1, method=method)
            vols.seg, vols.mask, record = automatic.seg, automatic.brain, automatic.provenance
        else:
            vols = load_subject(subject)
        for note in vols.notes:
            log.warning(note)
        stored_axis = resolve_axis(axis, vols.affine)
        bits, unknown = labels.tissue_bits(vols.seg, vols.mask)
    except InputError as error:
        return PrepareResult(subject.id, "failed", str(error))
    try:
        with building_folder(final) as temporary:
            _write_array(temporary, "t1", vols.t1, stored_axis)
            _write_array(temporary, "tissue", bits, stored_axis)
            if vols.t2 is not None:
                _write_array(temporary, "t2", vols.t2, stored_axis)
            meta = _metadata(vols, axis, stored_axis, bits, unknown, record)
            (temporary / META_NAME).write_text(json.dumps(meta, indent=1) + "\n")
    except OSError as error:  # a full disk, a read-only cache: nothing of this subject is left
        return PrepareResult(
            subject.id, "failed", f"{final}: cannot write the prepared subject ({error.strerror or error})"
        )
    return PrepareResult(subject.id, "prepared", unknown_codes=unknown)


def _die_with_parent() -> None:
    """In a worker process: be terminated when the parent dies (Linux), not live on as an orphan."""
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass


@dataclass
class PrepareReport:
    results: list[PrepareResult]

    def by_status(self, status: str) -> list[PrepareResult]:
        return [r for r in self.results if r.status == status]

    @property
    def failed(self) -> list[PrepareResult]:
        return self.by_status("failed")


def prepare_all(
    subjects: list[Subject],
    cache_dir: str | Path,
    axis: str | int = "axial",
    jobs: int = 1,
    strict: bool = False,
    force: bool = False,
    progress: bool = True,
    masks: str = "files",
) -> PrepareReport:
    """Prepare every subject (``jobs`` in parallel); bad subjects are reported, not fatal.

    ``masks``: ``files`` (the subjects' own segmentation and brain mask), ``auto`` or a method name
    (computed from each T1w, :mod:`mrsynth.masks`).

    With ``strict``, the first bad subject raises :class:`InputError` (subjects
    already prepared stay; nothing partial is left).
    """
    check_source(masks)
    remove_leftovers(cache_dir)  # of preparations that were killed
    results = []
    progress_bar = bar(total=len(subjects), allowed=progress, desc="prepare", unit="subject")

    def collect(result: PrepareResult) -> None:
        progress_bar.update()
        results.append(result)
        if progress_bar.disable:  # no bar: one line per subject instead
            log.info("prepare %s: %s%s", result.id, result.status, f" ({result.message})" if result.message else "")
        if result.unknown_codes:
            warnings.warn(
                f"subject {result.id}: segmentation codes not in the label table, "
                f"classed unknown: {result.unknown_codes}",
                UnknownLabelWarning,
                stacklevel=3,
            )
        if strict and result.status == "failed":
            raise InputError(result.message)

    try:
        if jobs <= 1:
            for subject in subjects:
                collect(prepare_subject(subject, cache_dir, axis, force, masks))
        else:
            with ProcessPoolExecutor(max_workers=jobs, initializer=_die_with_parent) as pool:
                futures = [pool.submit(prepare_subject, s, cache_dir, axis, force, masks) for s in subjects]
                try:
                    for future in as_completed(futures):
                        collect(future.result())
                except BaseException:
                    for future in futures:
                        future.cancel()
                    raise
    finally:
        progress_bar.close()
    return PrepareReport(sorted(results, key=lambda r: r.id))
