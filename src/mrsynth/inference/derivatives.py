"""Where predictions go: a flat folder of ``<id>.nii.gz``, or a BIDS derivatives dataset.

BIDS derivatives (BIDS 1.9, "Common data types and metadata" of derivatives)::

    OUT/dataset_description.json                    DatasetType "derivative", GeneratedBy mrsynth
    OUT/sub-<label>[/ses-<label>]/anat/<entities>_desc-mrsynth_T2w.nii.gz
    OUT/sub-<label>[/ses-<label>]/anat/<entities>_desc-mrsynth_T2w.json

``<entities>`` are the source T1w's own (``sub-01_ses-2_acq-mprage``), so pybids and
fMRIPrep-style tools match a prediction to its source.  A subject id from a non-BIDS layout
(HCP ``100307``, a manifest's ``subj_01``) becomes ``sub-<id without non-alphanumerics>``;
two ids that would share a label are refused.  The sidecar records the sources (BIDS URIs
into the input dataset, named ``raw`` in ``DatasetLinks``), the model (folder, SHA-256 of its
weights, description), the mrsynth version and the normalization applied to this subject.

The sidecar is written before the image, each atomically: an image on disk always has its
sidecar; a run killed between the two leaves a sidecar that the next run overwrites.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import __version__
from ..atomic import check_writable, create_once, write_text
from ..errors import InputError
from ..networks.modelfile import WEIGHTS, ModelInfo, file_sha256
from ..networks.normalization import Transform

BIDS_VERSION = "1.9.0"
PIPELINE = "mrsynth"
DESC = "mrsynth"
SUFFIX = "T2w"
SOURCE_DATASET = "raw"  # the DatasetLinks key under which the input dataset is named in Sources
_BIDS_PREFIX = re.compile(r"^sub-[A-Za-z0-9]+(_ses-[A-Za-z0-9]+)?(_[A-Za-z]+-[A-Za-z0-9]+)*$")
OUTPUT_LAYOUTS = ("auto", "bids", "flat")


def bids_prefix(subject_id: str) -> str:
    """The BIDS entities of a subject id: itself when it already is a BIDS prefix, else ``sub-<alphanumerics>``."""
    if _BIDS_PREFIX.match(subject_id):
        return subject_id
    label = re.sub(r"[^A-Za-z0-9]", "", subject_id)
    if not label:
        raise InputError(f"subject id {subject_id!r} has no letters or digits to make a BIDS label from")
    return f"sub-{label}"


def relative_path(subject_id: str, extension: str = ".nii.gz", desc: str = DESC, suffix: str = SUFFIX) -> Path:
    """``sub-X[/ses-Y]/anat/<entities>_desc-<desc>_<suffix><extension>`` inside the derivatives dataset (by
    default the prediction: ``desc-mrsynth_T2w``)."""
    prefix = bids_prefix(subject_id)
    parts = dict(entity.split("-", 1) for entity in prefix.split("_"))
    folder = Path(f"sub-{parts['sub']}") / (f"ses-{parts['ses']}" if "ses" in parts else "") / "anat"
    return folder / f"{prefix}_desc-{desc}_{suffix}{extension}"


def sidecar_path(image: Path) -> Path:
    """The JSON beside a ``.nii.gz``/``.nii`` image."""
    name = image.name.removesuffix(".gz").removesuffix(".nii")
    return image.with_name(name + ".json")


@dataclass(frozen=True)
class ModelProvenance:
    """What made a prediction: the model folder and its description."""

    folder: Path
    info: ModelInfo

    def describe(self) -> dict:
        sha = self.info.weights_sha256 or file_sha256(self.folder / WEIGHTS)
        description = {k: v for k, v in asdict(self.info).items() if k not in ("weights_sha256", "versions")}
        return {
            "name": self.info.name(),
            "folder": str(Path(self.folder).resolve()),
            "weights_sha256": sha,
            "trained_with": self.info.versions,
            "description": description,
        }


class Output:
    """Where each subject's prediction is written; flat (``<id>.nii.gz``) or BIDS derivatives."""

    def __init__(
        self, out_dir: Path, bids: bool, source_root: Path | None = None, provenance: ModelProvenance | None = None
    ):
        self.out_dir, self.bids, self.source_root, self.provenance = Path(out_dir), bids, source_root, provenance

    def prepare(self, subject_ids: list[str]) -> None:
        """Check the folder can be written and the names are distinct; write ``dataset_description.json``."""
        check_writable(self.out_dir / "prediction.nii.gz")
        if not self.bids:
            return
        paths: dict[Path, str] = {}
        for subject_id in subject_ids:
            path = relative_path(subject_id)
            if path in paths:
                raise InputError(
                    f"subjects {paths[path]!r} and {subject_id!r} would share the BIDS name {path}", self.out_dir
                )
            paths[path] = subject_id
        write_dataset_description(self.out_dir, self.source_root)

    def image_path(self, subject_id: str) -> Path:
        if self.bids:
            return self.out_dir / relative_path(subject_id)
        return self.out_dir / f"{subject_id}.nii.gz"

    def write_sidecar(
        self,
        subject_id: str,
        sources: dict[str, Path],
        masks: str,
        transform: Transform | None,
        notes: list[str] = (),
    ) -> Path | None:
        """The prediction's JSON sidecar (BIDS output only), written before its image; ``notes``: what reading the
        inputs changed or doubts."""
        if not self.bids:
            return None
        image = self.image_path(subject_id)
        check_writable(image)
        record = sidecar(sources, self.source_root, self.provenance, masks, transform, notes)
        return write_text(sidecar_path(image), json.dumps(record, indent=2) + "\n")


def source_uri(path: Path, root: Path | None) -> str:
    """A BIDS URI (``bids:raw:<path>``) for a file inside the input dataset, else a ``file://`` URI."""
    path = Path(path).resolve()
    if root is not None:
        try:
            return f"bids:{SOURCE_DATASET}:{path.relative_to(Path(root).resolve()).as_posix()}"
        except ValueError:
            pass
    return path.as_uri()


def sidecar(
    sources: dict[str, Path],
    root: Path | None,
    provenance: ModelProvenance | None,
    masks: str,
    transform: Transform | None,
    notes: list[str] = (),
) -> dict:
    """The sidecar of one prediction (BIDS keys first, then mrsynth's own record)."""
    order = ("t1", "seg", "mask")
    record = {
        "Description": "T2-weighted image predicted from the T1-weighted image by mrsynth",
        "Sources": [source_uri(sources[role], root) for role in order if sources.get(role) is not None],
        "mrsynth": {
            "version": __version__,
            "masks": masks,
            "normalization_t1": None if transform is None else asdict(transform),
            "negative_values": "set to 0: T2w signal is never negative",
            "input_notes": list(notes),
        },
    }
    if provenance is not None:
        record["mrsynth"]["model"] = provenance.describe()
        record["mrsynth"]["normalization"] = asdict(provenance.info.norm())
    return record


def dataset_description(source_root: Path | None) -> dict:
    description = {
        "Name": "mrsynth predicted T2w",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [
            {
                "Name": PIPELINE,
                "Version": __version__,
                "Description": "T2w predicted from T1w (fully convolutional network)",
            }
        ],
    }
    if source_root is not None:
        source = Path(source_root).resolve()
        description["SourceDatasets"] = [{"URL": source.as_uri()}]
        description["DatasetLinks"] = {SOURCE_DATASET: source.as_uri()}
    return description


def write_dataset_description(out_dir: Path, source_root: Path | None, once: bool = False) -> Path:
    """Write ``dataset_description.json``; refuse a folder that another pipeline's derivatives own.  ``once``: keep
    an existing one of mrsynth's as it is, and create a missing one exclusively (jobs that start together write it
    once, whole)."""
    path = Path(out_dir) / "dataset_description.json"
    if path.exists():
        check_owned(path)
        if once:
            return path
    text = json.dumps(dataset_description(source_root), indent=2) + "\n"
    if not once:
        return write_text(path, text)
    if not create_once(path, text):
        check_owned(path)
    return path


def check_owned(path: Path) -> None:
    """Refuse a ``dataset_description.json`` that is not mrsynth's."""
    try:
        existing = json.loads(path.read_text())
        owners = [entry.get("Name") for entry in existing.get("GeneratedBy", [])]
    except (OSError, ValueError, AttributeError) as error:
        raise InputError(f"cannot read the existing dataset description ({error})", path) from error
    if PIPELINE not in owners:
        raise InputError(
            f"this folder holds derivatives of {', '.join(map(str, owners)) or 'another pipeline'}; "
            "write mrsynth's predictions to a folder of their own",
            path,
        )


def output_is_bids(layout: str, input_layout: str) -> bool:
    """``auto``: BIDS derivatives for BIDS input, flat otherwise."""
    if layout not in OUTPUT_LAYOUTS:
        raise InputError(f"unknown output layout {layout!r}; choose from {', '.join(OUTPUT_LAYOUTS)}")
    return layout == "bids" or (layout == "auto" and input_layout == "bids")
