"""mrsynth as a BIDS App: ``mrsynth bids BIDS_DIR OUTPUT_DIR participant|group`` (the BIDS Apps convention of
fMRIPrep and MRIQC), one participant per job on a cluster, every T1w of a dataset given its synthetic T2w.

``participant`` (``--participant-label``, ``--session-label`` select; all by default): for every selected
``sub-X/[ses-Y/]anat/*_T1w.nii[.gz]`` of the raw dataset, with ``<prefix>`` its own entities::

    OUTPUT_DIR/dataset_description.json                          written once (jobs that start together)
    OUTPUT_DIR/sub-X/[ses-Y/]anat/<prefix>_desc-mrsynth_T2w.nii.gz     the synthetic T2w (+ .json: provenance,
                                                                       checks, input_notes; written last)
    OUTPUT_DIR/sub-X/[ses-Y/]anat/<prefix>_desc-brain_mask.nii.gz      the brain mask used (+ .json)
    OUTPUT_DIR/sub-X/[ses-Y/]anat/<prefix>_desc-mrsynth_uncertainty.nii.gz  where to trust it least (+ .json)
    OUTPUT_DIR/sub-X/figures/<prefix>_desc-mrsynth_view.html          the NiiVue viewer (T1w, T2w, uncertainty)
    OUTPUT_DIR/sub-X.html                                              the participant's report

A T1w is done when its T2w sidecar, written last, records the same T1w (SHA-256) and model (SHA-256 of its
weights) and every output it lists is there: a re-run skips it (``skip_existing``).  Each T1w's files are written
in a hidden staging folder of its participant and moved into place, the sidecar last; an interrupted run removes
what it had written for the T1w at hand, and the next run of that participant removes what a killed one left (a
staging folder, outputs without their sidecar): no partial derivative stays.

``group``: ``OUTPUT_DIR/group_mrsynth.tsv`` (one row per T1w: seconds, warnings, mean uncertainty, the contrast
check, brain volume) and ``OUTPUT_DIR/index.html`` linking the reports, from the sidecars of finished T1ws only.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from .. import __version__
from ..atomic import write_text
from ..errors import InputError
from ..inference.derivatives import (
    ModelProvenance,
    relative_path,
    sidecar,
    sidecar_path,
    source_uri,
    write_dataset_description,
)
from ..inference.predict import write_like
from ..inference.synthesis import Synthesis, synthesize
from ..inference.uncertainty import MEANING as UNCERTAINTY_MEANING
from ..inference.uncertainty import METHOD as UNCERTAINTY_METHOD
from ..io import discover
from ..logs import bar, log
from ..networks import load_model, model_folder, read_description
from ..networks.modelfile import WEIGHTS, file_sha256
from .report import group_index, subject_report

LEVELS = ("participant", "group")
#: Each T1w's outputs: key -> (desc, suffix) of its BIDS name.
OUTPUTS = {"T2w": ("mrsynth", "T2w"), "mask": ("brain", "mask"), "uncertainty": ("mrsynth", "uncertainty")}
VIEW = ("mrsynth", "view")
STAGING = ".mrsynth-staging"
SUMMARY = "group_mrsynth.tsv"
INDEX = "index.html"
SUMMARY_COLUMNS = (
    "image",
    "participant",
    "session",
    "seconds",
    "warnings",
    "mean_uncertainty",
    "contrast",
    "brain_ml",
    "outside_training_range",
    "report",
    "warning_text",
)


@dataclass(frozen=True)
class Image:
    """One T1w of the raw dataset: its entities (``prefix``), participant and session labels and path."""

    prefix: str
    participant: str
    session: str | None
    t1: Path

    def path(self, key: str, extension: str = ".nii.gz") -> Path:
        """Where an output goes, relative to the output folder (``key`` of ``OUTPUTS``)."""
        desc, suffix = OUTPUTS[key]
        return relative_path(self.prefix, extension, desc, suffix)

    def view(self) -> Path:
        return Path(f"sub-{self.participant}") / "figures" / f"{self.prefix}_desc-{VIEW[0]}_{VIEW[1]}.html"

    def files(self) -> list[Path]:
        """Every output of this T1w, the T2w's sidecar (the mark of a finished one) last."""
        images = [self.path(key) for key in OUTPUTS]
        marker, *sidecars = [sidecar_path(p) for p in images]
        return images + sidecars + [self.view(), marker]


@dataclass
class Outcome:
    """What a ``participant`` run did: T1ws written, skipped (done before) and failed (with the reason)."""

    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def _label(value: str, entity: str) -> str:
    """A participant or session label as given (``01`` or ``sub-01``) without its entity."""
    return value.removeprefix(f"{entity}-")


def select(bids_dir: Path, participants=(), sessions=()) -> list[Image]:
    """The T1ws of the selected participants and sessions (all by default); a label that selects nothing is an
    error that names it."""
    bids_dir = Path(bids_dir)
    if not bids_dir.is_dir() or not any(bids_dir.glob("sub-*")):
        raise InputError("not a BIDS dataset: no sub-* folders", bids_dir)
    images = []
    for subject in discover(bids_dir, "bids"):
        entities = dict(part.split("-", 1) for part in subject.id.split("_") if "-" in part)
        images.append(Image(subject.id, entities["sub"], entities.get("ses"), Path(subject.t1)))
    wanted = {_label(p, "sub") for p in participants}
    missing = sorted(wanted - {image.participant for image in images})
    if missing:
        raise InputError(f"no T1w for participant label(s) {', '.join(missing)}", bids_dir)
    images = [image for image in images if not wanted or image.participant in wanted]
    sessions = {_label(s, "ses") for s in sessions}
    missing = sorted(sessions - {image.session for image in images})
    if missing:
        raise InputError(f"no T1w for session label(s) {', '.join(missing)} of the selected participants", bids_dir)
    images = [image for image in images if not sessions or image.session in sessions]
    if not images:
        raise InputError("no T1w found (sub-*/[ses-*/]anat/*_T1w.nii[.gz])", bids_dir)
    return images


def check_folders(bids_dir: Path, out_dir: Path) -> None:
    """The output folder is not the dataset, nor inside a participant's folder of it (derivatives/ is the place)."""
    bids_dir, out_dir = Path(bids_dir).resolve(), Path(out_dir).resolve()
    if out_dir == bids_dir or any(
        parent.name.startswith("sub-") and parent.parent == bids_dir for parent in [out_dir, *out_dir.parents]
    ):
        raise InputError(
            "the output folder must not be the dataset or inside it (use BIDS_DIR/derivatives/mrsynth)", out_dir
        )
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError("exists and is not a folder", out_dir)


def participant(
    bids_dir: str | Path,
    out_dir: str | Path,
    participants=(),
    sessions=(),
    model: str | Path = "pretrained",
    skip_existing: bool = True,
    masks: str = "auto",
    command: str = "",
    progress: bool = False,
    **options,
) -> Outcome:
    """The ``participant`` level: every selected T1w's synthetic T2w, brain mask, uncertainty and viewer page,
    then each touched participant's report (module docstring).  A T1w that fails (bad input) is reported and the
    others go on."""
    bids_dir, out_dir = Path(bids_dir), Path(out_dir)
    check_folders(bids_dir, out_dir)
    images = select(bids_dir, participants, sessions)
    info = read_description(model)  # the network is loaded only when a T1w is to be computed: a re-run is quick
    provenance = ModelProvenance(model_folder(model), info)
    weights = info.weights_sha256 or file_sha256(provenance.folder / WEIGHTS)
    network = None
    write_dataset_description(out_dir, bids_dir, once=True)
    outcome = Outcome()
    by_participant: dict[str, list[Image]] = {}
    for image in images:
        by_participant.setdefault(image.participant, []).append(image)
    for label, own in by_participant.items():
        clean_participant(out_dir, label, own)
        for image in bar(own, allowed=progress, desc=f"sub-{label}", unit="T1w"):
            if skip_existing and is_done(out_dir, image, weights):
                outcome.skipped.append(image.prefix)
                continue
            if network is None:
                network, info = load_model(model)
            try:
                result = synthesize(network, info, image.t1, masks=masks, **options)
            except InputError as error:
                log.error("mrsynth: %s", error)
                outcome.failed[image.prefix] = str(error)
                continue
            record = {"command": command, "weights_sha256": weights, "provenance": provenance}
            write_image(out_dir, bids_dir, image, result, record)
            outcome.written.append(image.prefix)
            log.info("%s: %s", image.prefix, out_dir / image.path("T2w"))
        report = out_dir / f"sub-{label}.html"
        touched = any(image.prefix in outcome.written or image.prefix in outcome.failed for image in own)
        if touched or not report.exists():
            write_text(report, subject_report(out_dir, label, finished(out_dir, label), _failures(outcome, own)))
    return outcome


def _failures(outcome: Outcome, images: list[Image]) -> dict[str, str]:
    return {image.prefix: outcome.failed[image.prefix] for image in images if image.prefix in outcome.failed}


def is_done(out_dir: Path, image: Image, weights: str) -> bool:
    """Whether the T1w's sidecar says it was synthesized from this very T1w by this model, every output there."""
    marker = out_dir / sidecar_path(image.path("T2w"))
    try:
        record = json.loads(marker.read_text())["mrsynth"]
        inputs, outputs = record["inputs"], record["outputs"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if record["model"]["weights_sha256"] != weights or inputs["t1"]["sha256"] != file_sha256(image.t1):
        return False
    return all((out_dir / path).exists() for path in outputs.values())


def clean_participant(out_dir: Path, label: str, images: list[Image]) -> None:
    """Remove what a killed run of this participant left: its staging folder, and the outputs of a T1w whose
    sidecar (written last) is missing."""
    shutil.rmtree(out_dir / f"sub-{label}" / STAGING, ignore_errors=True)
    for image in images:
        files = image.files()
        if not (out_dir / files[-1]).exists():
            for path in files[:-1]:
                (out_dir / path).unlink(missing_ok=True)


def write_image(out_dir: Path, bids_dir: Path, image: Image, result: Synthesis, record: dict) -> None:
    """Every output of one T1w, staged whole then moved into place with the T2w's sidecar last; on any failure or
    interruption, what was moved is removed again."""
    staging = out_dir / f"sub-{image.participant}" / STAGING / uuid.uuid4().hex[:8]
    staging.mkdir(parents=True)
    files = image.files()
    moved: list[Path] = []
    try:
        _stage(staging, out_dir, bids_dir, image, result, record)
        for path in files:
            target = out_dir / path
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / path, target)
            moved.append(target)
    except BaseException:
        for target in moved:
            target.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if not any(staging.parent.iterdir()):
            staging.parent.rmdir()


def _stage(staging: Path, out_dir: Path, bids_dir: Path, image: Image, result: Synthesis, record: dict) -> None:
    """Write the T1w's outputs under ``staging`` with their final relative paths."""
    from ..evaluation.viewer import ViewerInput, build_page

    source = nib.load(str(image.t1))
    info = record["provenance"].info
    volumes = {"T2w": result.t2w, "mask": result.brain, "uncertainty": result.uncertainty}
    for key, volume in volumes.items():
        path = staging / image.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_like(volume, source, result.affine, path, info.stamp(), np.uint8 if key == "mask" else np.float32)
    t1_uri = source_uri(image.t1, bids_dir)
    outputs = {key: image.path(key).as_posix() for key in OUTPUTS} | {"view": image.view().as_posix()}
    _json(staging / sidecar_path(image.path("mask")), _mask_sidecar(t1_uri, result))
    _json(staging / sidecar_path(image.path("uncertainty")), _uncertainty_sidecar(t1_uri, image))
    page = ViewerInput(pred=result.t2w, affine=result.affine, t1=result.t1, mask=result.brain)
    page.uncertainty, page.made_by = result.uncertainty, info.stamp()
    view = staging / image.view()
    view.parent.mkdir(parents=True, exist_ok=True)
    view.write_text(build_page(page, f"mrsynth: {image.prefix}", max_voxels=2_000_000))
    t2w = sidecar(
        {"t1": image.t1}, bids_dir, record["provenance"], result.masks["source"], result.transform, result.notes
    )
    t2w["mrsynth"] |= {
        "command": record["command"],
        "inputs": {"t1": {"path": str(image.t1.resolve()), "sha256": file_sha256(image.t1)}},
        "masks_record": result.masks,
        "seconds": round(result.seconds, 1),
        "checks": result.checks,
        "uncertainty": UNCERTAINTY_METHOD,
        "outputs": outputs,
        "participant": image.participant,
        "session": image.session,
        "prefix": image.prefix,
    }
    _json(staging / sidecar_path(image.path("T2w")), t2w)


def _json(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")


def _mask_sidecar(t1_uri: str, result: Synthesis) -> dict:
    return {
        "Type": "Brain",
        "Sources": [t1_uri],
        "mrsynth": {"version": __version__, "masks": result.masks, "brain_ml": result.checks["brain_ml"]},
    }


def _uncertainty_sidecar(t1_uri: str, image: Image) -> dict:
    return {
        "Description": UNCERTAINTY_MEANING,
        "Units": "the synthetic T2w's (brain median 1000); 0 outside the brain mask",
        "Sources": [t1_uri, f"bids::{image.path('T2w').as_posix()}"],
        "mrsynth": {"version": __version__, "method": UNCERTAINTY_METHOD},
    }


def finished(out_dir: Path, label: str | None = None) -> list[dict]:
    """The sidecars of every finished T1w in the output folder (of one participant, or all), sorted by name."""
    pattern = f"sub-{label}/**/*_desc-mrsynth_T2w.json" if label else "sub-*/**/*_desc-mrsynth_T2w.json"
    records = []
    for path in sorted(Path(out_dir).glob(pattern)):
        if STAGING in path.parts:
            continue
        try:
            records.append(json.loads(path.read_text()) | {"_sidecar": path})
        except (OSError, ValueError):
            continue
    return [r for r in records if "outputs" in r.get("mrsynth", {})]


def group(bids_dir: str | Path, out_dir: str | Path) -> tuple[Path, Path]:
    """The ``group`` level: the summary table and the index page, from the finished T1ws' sidecars."""
    bids_dir, out_dir = Path(bids_dir), Path(out_dir)
    check_folders(bids_dir, out_dir)
    records = finished(out_dir)
    if not records:
        raise InputError("no finished T1w here: run the participant level first", out_dir)
    rows = [summary_row(record) for record in records]
    table = io.StringIO()
    writer = csv.DictWriter(table, SUMMARY_COLUMNS, delimiter="\t", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    summary = write_text(out_dir / SUMMARY, table.getvalue())
    index = write_text(out_dir / INDEX, group_index(rows, time.strftime("%Y-%m-%d %H:%M")))
    return summary, index


def summary_row(record: dict) -> dict:
    """One T1w's row of the group table, from its sidecar."""
    own = record["mrsynth"]
    checks = own.get("checks", {})
    return {
        "image": own["prefix"],
        "participant": own["participant"],
        "session": own["session"] or "n/a",
        "seconds": own["seconds"],
        "warnings": len(own["input_notes"]),
        "mean_uncertainty": round(checks.get("mean_uncertainty", float("nan")), 1),
        "contrast": checks.get("contrast"),
        "brain_ml": checks.get("brain_ml"),
        "outside_training_range": checks.get("outside_training_range"),
        "report": f"sub-{own['participant']}.html",
        "warning_text": " | ".join(w.replace("\t", " ").replace("\n", " ") for w in own["input_notes"]),
    }
