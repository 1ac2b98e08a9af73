"""Honest baselines: fitting the lookup predictors of :mod:`mrsynth.networks.lookup` on a run's data.

A network that does not beat them has learned nothing a lookup table can't do.

* ``tissue-mean``: each voxel gets the mean training T2w of its tissue group (one of the
  seven exclusive tissue classes, inside or outside the brain mask: 14 groups).
* ``intensity-map``: the plain lookup table, a per-voxel T1w -> T2w map piecewise linear
  through the mean T2w of each of 64 T1w quantile bins of the training *brain* voxels.  It
  reads only the T1w (a T1w-only model: no segmentation needed to predict).  Fitting it on
  every voxel, as mrsynth once did, let the background (dark in both contrasts) outweigh
  dark-T1w CSF (bright in T2w) in the lowest bins: dark rims along the cortex, 9-13 dB on
  real subjects where a plain table gets 17-19 dB.

Both are fitted on the run's training subjects, every voxel weighted once: on the whole
volumes of an across-subject split (the intensity map is then the few lines of numpy it names,
tested against them on real data), or on the training patches of a within-subject split (so they
never see test pixels; a seeded random subset of at most ``max_patches`` of them).  They are
saved as model files (``RUN/baselines/<kind>/``) that predict and score exactly like the network.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from .. import labels
from ..data import CHANNELS, PatchDataset, batch_loader
from ..inference import Model
from ..networks import InputSpec, ModelInfo, Normalization, intensity_stats, save_model
from ..networks.lookup import N_GROUPS, IntensityMap, TissueMean, tissue_group
from . import runs

KINDS = (TissueMean.kind, IntensityMap.kind)
MASK_CHANNELS = CHANNELS[-1]  # the baselines read the tissue masks


def fit_tissue_mean(dataset: PatchDataset, max_patches: int = 2000, seed: int = 0) -> TissueMean:
    sums = torch.zeros(N_GROUPS, dtype=torch.float64)
    counts = torch.zeros(N_GROUPS, dtype=torch.float64)
    for inputs, target in _training_batches(dataset, max_patches, seed):
        group = tissue_group(inputs[:, 1:]).ravel()
        sums += torch.bincount(group, weights=target[:, 0].ravel().double(), minlength=N_GROUPS)
        counts += torch.bincount(group, minlength=N_GROUPS).double()
    overall = sums.sum() / counts.sum()
    return TissueMean(torch.where(counts > 0, sums / counts.clamp(min=1), overall).float())


def fit_intensity_map(dataset: PatchDataset, max_patches: int = 2000, seed: int = 0, bins: int = 64) -> IntensityMap:
    """The binned mean T2w per T1w intensity over the brain voxels of (a subset of) the training patches."""
    xs, ys = [], []
    for inputs, target in _training_batches(dataset, max_patches, seed):
        brain = inputs[:, 1 + labels.BIT["brain"]] > 0
        xs.append(inputs[:, 0][brain].numpy())
        ys.append(target[:, 0][brain].numpy())
    x, y = np.concatenate(xs).astype(np.float64), np.concatenate(ys).astype(np.float64)
    return lookup_table(x, y, bins)


def brain_voxels(subjects, normalization, max_voxels: int = 20_000_000) -> tuple[np.ndarray, np.ndarray]:
    """Normalized T1w and T2w of the training subjects' brain voxels, every voxel weighted alike.

    Whole volumes from the cache, each subject thinned to an even share of ``max_voxels``
    (every k-th brain voxel) so memory stays bounded with many subjects.
    """
    xs, ys = [], []
    share = max(1, max_voxels // max(len(subjects), 1))
    for subject in subjects:
        brain = labels.in_brain(subject.array("tissue"))
        step = max(1, int(np.ceil(brain.sum() / share)))
        t1 = normalization.transform("t1", subject.stats)(subject.array("t1")[brain][::step])
        t2 = normalization.transform("t2", subject.stats)(subject.array("t2")[brain][::step])
        xs.append(t1.astype(np.float64))
        ys.append(t2.astype(np.float64))
    return np.concatenate(xs), np.concatenate(ys)


def fit_network_lookup(subjects, normalization, bins: int = 64) -> IntensityMap:
    """The lookup table a :class:`~mrsynth.networks.LookupResidual` corrects: :func:`lookup_table` of the brain
    voxels, with background (T1w 0) mapped to 0 where the darkest brain bin lies above it."""
    table = lookup_table(*brain_voxels(subjects, normalization), bins)
    if table.knots_x[0] > 0:
        table = IntensityMap(torch.cat([torch.zeros(1), table.knots_x]), torch.cat([torch.zeros(1), table.knots_y]))
    return table


def lookup_table(x: np.ndarray, y: np.ndarray, bins: int = 64) -> IntensityMap:
    """Piecewise-linear map through (mean x, mean y) of each of ``bins`` quantile bins of ``x``."""
    edges = np.unique(np.quantile(x, np.linspace(0, 1, bins + 1)))
    which = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(edges) - 2)
    counts = np.bincount(which, minlength=len(edges) - 1)
    keep = counts > 0
    centres = np.bincount(which, weights=x, minlength=len(edges) - 1)[keep] / counts[keep]
    means = np.bincount(which, weights=y, minlength=len(edges) - 1)[keep] / counts[keep]
    return IntensityMap(torch.tensor(centres, dtype=torch.float32), torch.tensor(means, dtype=torch.float32))


def fit_table(volumes, method: str = "robust", names=()) -> Model:
    """The plain lookup table fitted on in-memory ``(T1w, T2w, brain mask)`` volumes, every brain voxel weighted
    once, each contrast of each volume divided by its own brain statistic (``robust``: median, ``percentile``: 99th
    percentile): the ``intensity-map`` baseline as a model that predicts any T1w like every other (0 outside the
    brain).  For studies on volumes that were never prepared (templates, simulated heads)."""
    stats = [{"t1": intensity_stats(t1, brain), "t2": intensity_stats(t2, brain)} for t1, t2, brain in volumes]
    norm = Normalization.fit(method, stats)
    xs, ys = [], []
    for (t1, t2, brain), subject in zip(volumes, stats):
        xs.append(norm.transform("t1", subject)(t1[brain]).astype(np.float64))
        ys.append(norm.transform("t2", subject)(t2[brain]).astype(np.float64))
    spec = InputSpec(normalization=norm, brain_only=True)
    training = {"subjects": list(names), "voxels": "whole volumes"}
    return Model(
        lookup_table(np.concatenate(xs), np.concatenate(ys)), ModelInfo(IntensityMap.kind, spec, training=training)
    )


def fit_tissue_mean_volumes(subjects, normalization) -> TissueMean:
    """The mean normalized T2w of each tissue group over every voxel of the training subjects."""
    sums, counts = np.zeros(N_GROUPS), np.zeros(N_GROUPS)
    for subject in subjects:
        bits = np.asarray(subject.array("tissue"))
        group = (2 * (labels.exclusive_class(bits).astype(np.int64) - 1) + labels.in_brain(bits)).ravel()
        t2 = normalization.transform("t2", subject.stats)(subject.array("t2")).ravel()
        sums += np.bincount(group, weights=t2, minlength=N_GROUPS)
        counts += np.bincount(group, minlength=N_GROUPS)
    overall = sums.sum() / counts.sum()
    return TissueMean(torch.tensor(np.where(counts > 0, sums / np.maximum(counts, 1), overall), dtype=torch.float32))


def fit_intensity_map_volumes(subjects, normalization) -> IntensityMap:
    """The plain lookup table over the training subjects' brain voxels."""
    return lookup_table(*brain_voxels(subjects, normalization))


FITTERS = {TissueMean.kind: fit_tissue_mean, IntensityMap.kind: fit_intensity_map}
VOLUME_FITTERS = {TissueMean.kind: fit_tissue_mean_volumes, IntensityMap.kind: fit_intensity_map_volumes}


def _training_batches(dataset: PatchDataset, max_patches: int, seed: int):
    """Up to ``max_patches`` training patches (a seeded random subset), in batches."""
    count = min(len(dataset), max_patches) if max_patches else len(dataset)
    order = np.random.default_rng(seed).permutation(len(dataset))[:count].tolist()
    return batch_loader(dataset, order, 64)


def fit_lookup(run_dir: str | Path, kind: str, max_patches: int = 2000) -> Path:
    """Fit the lookup baseline ``kind`` on a run's training data, with its normalization; save it as the model
    folder ``RUN/baselines/<kind>`` (returned).

    Across subjects: on the training subjects' whole volumes; within one subject: on its training patches.
    """
    return _fit_and_save(run_dir, kind, *_run_data(run_dir), max_patches)


def fit_for_run(run_dir: str | Path, max_patches: int = 2000, cache: str | Path | None = None) -> dict[str, Path]:
    """Both baselines of a run (:func:`fit_lookup`), the run's data read once: their model folders by kind.

    ``cache``: the run's prepared cache, where it cannot be found from the run folder's record."""
    data = _run_data(run_dir, cache)
    return {kind: _fit_and_save(run_dir, kind, *data, max_patches) for kind in KINDS}


def _run_data(run_dir: str | Path, cache: str | Path | None = None) -> tuple:
    config = runs.resume_config(run_dir, [f"data.cache={cache}"] if cache else [])
    config.data.channels, config.data.context, config.data.min_brain = MASK_CHANNELS, 0, 0.0  # 2D, with the masks
    return config, runs.load_run_data(run_dir, config)


def _fit_and_save(run_dir, kind: str, config, data: runs.RunData, max_patches: int) -> Path:
    if data.split.kind == "across":
        model = VOLUME_FITTERS[kind]([part.subject for part in data.train.parts], data.normalization)
        fitted_on = {"voxels": "whole volumes"}
    else:
        model = FITTERS[kind](data.train, max_patches, config.seed)
        fitted_on = {"patches": min(len(data.train), max_patches), "patch_size": data.train.grid.size}
    spec = replace(data.spec, offsets=(0,), tissue_masks=model.in_channels > 1)  # voxel by voxel, 2D
    info = ModelInfo(
        kind=kind,
        spec=spec,
        masks=data.masks,
        patch_size=data.grid.size,
        stride=data.grid.stride,
        training={"subjects": data.split.train, **fitted_on},
    )
    return save_model(Path(run_dir) / runs.BASELINES / kind, model, info)
