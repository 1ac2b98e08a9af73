"""The run folder: its files, its data (split, normalization, datasets) and its history.

Run folder::

    config.toml          the configuration as run (reload with --config), its cache as an absolute path
    cache.json           where the prepared cache is: absolute, and relative to the run folder
    split.json           which subjects / patches train, validate and test
    normalization.json   fitted on the training subjects only
    history.csv          per epoch: train loss, validation loss, learning rate, seconds, patches/s
    steps.csv            per optimizer step: loss
    learning_curve.png
    checkpoint.pt        after every epoch (atomic write); --resume continues from it
    summary.json         final losses (validation and test, eval mode), timings
    model/               the exported model (mrsynth.networks.modelfile)
    baselines/<kind>/    lookup baselines fitted on the same training patches (mrsynth.training.baselines)

Everything here reads or writes that folder; the training loop itself is :mod:`mrsynth.training.trainer`.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import write_text
from ..data import (
    PatchDataset,
    PatchGrid,
    PreparedSubject,
    Split,
    across_subject_split,
    is_prepared_cache,
    list_prepared,
    masks_source,
    on_grid,
    within_subject_split,
)
from ..errors import InputError
from ..masks import MASK_METHODS
from ..networks import InputSpec, Normalization
from ..networks.modelfile import DESCRIPTION
from .config import TrainConfig, input_spec
from .configfile import load_config

CONFIG = "config.toml"
CACHE_RECORD = "cache.json"
SPLIT = "split.json"
NORMALIZATION = "normalization.json"
HISTORY = "history.csv"
STEPS = "steps.csv"
LEARNING_CURVE = "learning_curve.png"
CHECKPOINT = "checkpoint.pt"
SUMMARY = "summary.json"
MODEL = "model"
BASELINES = "baselines"

HISTORY_FIELDS = ["epoch", "train_loss", "val_loss", "lr", "seconds", "patches_per_s"]
STEP_FIELDS = ["step", "epoch", "loss"]


@dataclass
class RunData:
    split: Split
    spec: InputSpec  # the input contract, its normalization fitted on the training subjects
    grid: PatchGrid
    train: PatchDataset
    val: PatchDataset | None
    test: PatchDataset | None

    @property
    def normalization(self) -> Normalization:
        return self.spec.normalization

    @property
    def masks(self) -> str:
        """Where the training subjects' masks came from (``files`` or an automatic method; one for all, checked)."""
        return masks_source(self.train.parts[0].subject.meta)


def check_masks_agree(subjects: list[PreparedSubject]) -> None:
    """Refuse a run whose subjects mix masks from files and automatic masks, or two automatic methods (they
    differ systematically)."""
    by_source: dict[str, list[str]] = {}
    for subject in subjects:
        by_source.setdefault(masks_source(subject.meta), []).append(subject.id)
    if len(by_source) > 1:
        groups = [
            f"{'from files' if source == 'files' else 'automatic by ' + source} ({', '.join(ids)})"
            for source, ids in sorted(by_source.items(), key=lambda item: (item[0] != "files", item[0]))
        ]
        raise InputError(
            "the run's subjects mix masks " + " with masks ".join(groups) + ": prepare them all the "
            "same way (prepare --masks files|auto|" + "|".join(MASK_METHODS) + ")"
        )


def _pick(subjects: dict[str, PreparedSubject], ids: list[str], cache) -> list[PreparedSubject]:
    missing = [i for i in ids if i not in subjects]
    if missing:
        raise InputError(f"subject(s) not in the prepared cache: {', '.join(missing)}", cache)
    return [subjects[i] for i in ids]


def make_split(config: TrainConfig, subjects: dict[str, PreparedSubject], grid: PatchGrid) -> Split:
    data = config.data
    if data.split == "within":
        subject_id = data.subject or next(iter(subjects))
        subject = _pick(subjects, [subject_id], data.cache)[0]
        return within_subject_split(subject_id, grid.count(subject.stored_shape), config.seed, tuple(data.fractions))
    train = data.train or [i for i in subjects if i not in data.val and i not in data.test]
    try:
        return across_subject_split(train, data.test, data.val)
    except ValueError as error:
        raise InputError(str(error)) from error


def build_data(config: TrainConfig, split: Split | None = None) -> RunData:
    """Datasets of a run: the split, and normalization fitted on the training subjects."""
    data = config.data
    subjects = {s.id: s for s in list_prepared(data.cache)}
    grid = PatchGrid(data.patch_size, data.stride)
    split = split or make_split(config, subjects, grid)
    train_subjects = _pick(subjects, split.train, data.cache)
    check_masks_agree(_pick(subjects, sorted(set(split.train) | set(split.val) | set(split.test)), data.cache))
    try:
        norm = Normalization.fit(data.norm, [s.stats for s in train_subjects])
    except (ValueError, KeyError) as error:
        raise InputError(
            f"cannot fit {data.norm} normalization on subjects {', '.join(split.train)}: {error}", data.cache
        ) from None
    spec = input_spec(config, norm, train_subjects[0].axis_request)

    if data.sampling == "tiles" and split.kind == "within":
        raise InputError("tile sampling needs an across-subject split: tiles would cover the test patches")
    if data.grid_mm and split.kind == "within":
        raise InputError("data.grid_mm needs an across-subject split: the patch split is made on the subject's grid")

    def dataset(part: str) -> PatchDataset | None:
        ids = getattr(split, part)
        if not ids:
            return None
        indices = split.part_indices(part)
        if indices is not None and not len(indices):
            return None
        part_grid = PatchGrid.tiles(data.tile_size) if part == "train" and data.sampling == "tiles" else grid
        built = PatchDataset([on_grid(s, spec) for s in _pick(subjects, ids, data.cache)], spec, part_grid, indices)
        if part == "train" and data.min_brain > 0:
            kept = np.flatnonzero(built.brain_fractions() >= data.min_brain)
            if not len(kept):
                raise InputError(
                    f"no training patch has a brain fraction of at least {data.min_brain} (data.min_brain)", data.cache
                )
            built = built.restricted(kept)
        return built

    return RunData(split, spec, grid, dataset("train"), dataset("val"), dataset("test"))


def load_run_data(run_dir: str | Path, config: TrainConfig | None = None) -> RunData:
    """The datasets of an existing run, with the split it saved (``config``: the run's own by default)."""
    run_dir = Path(run_dir)
    return build_data(config or resume_config(run_dir), Split.load(run_dir / SPLIT))


def resume_config(run_dir: str | Path, overrides: list[str] = ()) -> TrainConfig:
    """The config a run was started with (``config.toml``), with optional overrides (e.g. more epochs); its
    prepared cache found wherever the run is opened from (:func:`locate_cache`) unless an override names one."""
    path = Path(run_dir) / CONFIG
    if not path.exists():
        raise InputError(f"not a run folder (no {CONFIG})", run_dir)
    config = load_config(path, overrides, inherit=False)
    if not any(override.strip().startswith("data.cache=") for override in overrides):
        config.data.cache = str(locate_cache(run_dir, config.data.cache))
    return config


def record_cache(run_dir: Path, cache: str | Path) -> Path:
    """Write ``cache.json``: the run's cache as an absolute path and relative to the run folder; returns the
    absolute path (what ``config.toml`` records)."""
    cache, run_dir = Path(cache).resolve(), Path(run_dir).resolve()
    record = {"cache": str(cache), "cache_from_run": os.path.relpath(cache, run_dir)}
    write_text(run_dir / CACHE_RECORD, json.dumps(record, indent=1) + "\n")
    return cache


def locate_cache(run_dir: str | Path, recorded: str) -> Path:
    """The run's prepared cache: where it lies relative to the run folder (the two moved together), else at its
    absolute path (the run moved alone), else as its ``config.toml`` names it (runs written before
    ``cache.json``: relative to the folder training started in).  Refused, naming every place looked at, when
    none holds prepared subjects."""
    run_dir = Path(run_dir)
    candidates = []
    if (run_dir / CACHE_RECORD).exists():
        record = json.loads((run_dir / CACHE_RECORD).read_text())
        candidates += [run_dir / record["cache_from_run"], Path(record["cache"])]
    candidates.append(Path(recorded))
    for candidate in candidates:
        if is_prepared_cache(candidate):
            return candidate
    looked = ", ".join(dict.fromkeys(str(c) for c in candidates))
    raise InputError(
        f"the run's prepared cache is not where it was: looked in {looked}; give its folder "
        "(--cache CACHE, or --set data.cache=CACHE)",
        run_dir,
    )


def is_finished(run_dir: str | Path) -> bool:
    """Whether a run has exported its model and summary."""
    run_dir = Path(run_dir)
    return (run_dir / SUMMARY).exists() and (run_dir / MODEL / DESCRIPTION).exists()


def state(run_dir: str | Path) -> str:
    """What training into ``run_dir`` does: ``reused`` (a finished run), ``resumed`` (from its checkpoint) or
    ``trained`` (from the start)."""
    run_dir = Path(run_dir)
    if is_finished(run_dir):
        return "reused"
    return "resumed" if (run_dir / CHECKPOINT).exists() else "trained"


def read_summary(run_dir: str | Path) -> dict:
    return json.loads((Path(run_dir) / SUMMARY).read_text())


# --------------------------------------------------------------------------- history


def _read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def read_history(run_dir: str | Path) -> list[dict]:
    """Per-epoch rows of ``history.csv`` (strings, as written)."""
    return _read_csv(Path(run_dir) / HISTORY)


def read_steps(run_dir: str | Path) -> list[dict]:
    """Per-step rows of ``steps.csv``."""
    return _read_csv(Path(run_dir) / STEPS)


def start_history(run_dir: Path) -> None:
    for name, header in ((HISTORY, HISTORY_FIELDS), (STEPS, STEP_FIELDS)):
        with (run_dir / name).open("w", newline="") as handle:
            csv.writer(handle).writerow(header)


def append_history(run_dir: Path, row: dict, steps: list[float]) -> None:
    """Add one epoch's row and its per-step losses."""
    with (run_dir / HISTORY).open("a", newline="") as handle:
        csv.DictWriter(handle, HISTORY_FIELDS).writerow(row)
    first = (row["epoch"] - 1) * len(steps)
    with (run_dir / STEPS).open("a", newline="") as handle:
        writer = csv.writer(handle)
        for i, value in enumerate(steps):
            writer.writerow([first + i + 1, row["epoch"], f"{value:.6g}"])


def truncate_history(run_dir: Path, last_epoch: int) -> None:
    """Drop history rows after ``last_epoch`` (a resumed run rewrites them)."""
    for name in (HISTORY, STEPS):
        path = run_dir / name
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            header, rows = reader.fieldnames, list(reader)
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, header)
            writer.writeheader()
            writer.writerows(r for r in rows if int(r["epoch"]) <= last_epoch)


def plot_learning_curve(run_dir: str | Path) -> Path:
    """Train and validation loss per epoch (and per step, faint) as ``learning_curve.png``."""
    from ..figures import learning_curve_figure

    run_dir = Path(run_dir)
    return learning_curve_figure(read_history(run_dir), read_steps(run_dir), run_dir / LEARNING_CURVE)
