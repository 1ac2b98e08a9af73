"""The input contract (mrsynth.networks.InputSpec): for every way a network is trained -- ``train``, ``train`` from the
pretrained model (``init``), ``pretrain --recipe synthesis`` and ``--recipe segmenter`` -- a couple of training steps,
then the input a training batch holds for one place equals what prediction feeds the network there.  The first
shipped weights read the slice below as their centre because two input builders disagreed (6.4 dB lost)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_config

from mrsynth.inference import Model
from mrsynth.networks import runner
from mrsynth.training import build_data, load_config, train

SIZE = 16  # the side of the compared window


@pytest.fixture()
def fed(monkeypatch):
    """What the whole-volume runner feeds the network, batch by batch: (first slice, window, input)."""
    recorded = []
    original = runner._Source.batch

    def batch(self, start, stop, window):
        inputs = original(self, start, stop, window)
        recorded.append((start, window, inputs.copy()))
        return inputs

    monkeypatch.setattr(runner._Source, "batch", batch)
    return recorded


def fed_at(recorded: list, z: int, row: int, col: int, size: int = SIZE) -> np.ndarray:
    """The network's input at slice ``z``, rows ``row:row+size``, columns ``col:col+size`` (the first batch that
    held them)."""
    for start, (rows, cols), inputs in recorded:
        inside = rows.start <= row and row + size <= rows.stop and cols.start <= col and col + size <= cols.stop
        if 0 <= z - start < len(inputs) and inside:
            r, c = row - rows.start, col - cols.start
            return inputs[z - start, :, r : r + size, c : c + size]
    raise AssertionError(f"prediction never fed slice {z} at ({row}, {col})")


def _patch_in_brain(dataset, size: int) -> int:
    """A training item whose window lies inside its slice and holds brain (a generous share)."""
    brain = dataset.brain_fractions()
    for item in np.argsort(-brain, kind="stable"):
        _, z, row, col = dataset.locate(int(item))
        height, width = dataset.parts[0].subject.stored_shape[1:]
        if row >= 0 and col >= 0 and row + size <= height and col + size <= width:
            return int(item)
    raise AssertionError("no patch inside its slice")


def _compare_run(run: Path, config, fed: list) -> None:
    """A run's training input at one patch against what its exported model is fed there."""
    data = build_data(config)
    item = _patch_in_brain(data.train, data.train.grid.size)
    trained = data.train[item][0].numpy()
    part, z, row, col = data.train.locate(item)
    subject = data.train.parts[part].subject
    Model.load(run / "model").predict(getattr(subject, "subject", subject))
    size = data.train.grid.size
    np.testing.assert_allclose(fed_at(fed, z, row, col, size), trained, rtol=1e-6, atol=1e-6)


@pytest.mark.slow
def test_train_feeds_training_and_prediction_the_same_input(cache, tmp_path, fed):
    config = tiny_config(cache, "data.context=1", "data.strip=true", "optim.epochs=1", "data.max_patches_per_epoch=32")
    train(config, tmp_path / "run", progress=False)
    _compare_run(tmp_path / "run", config, fed)


@pytest.mark.slow
def test_fine_tuning_the_pretrained_model_keeps_its_grid_and_feeds_training_and_prediction_alike(
    cache, tmp_path, fed, caplog
):
    settings = [f"data.cache={cache}", "data.train=001", "data.test=003", "data.tile_size=32"]
    settings += ["optim.epochs=1", "data.max_patches_per_epoch=8", "optim.batch_size=4"]
    config = load_config(None, settings, ["finetune"])
    assert (config.data.grid_mm, config.data.brain_only, config.data.context, config.model.kind) == (
        1.0,
        True,
        1,
        "unet",
    )
    with caplog.at_level(logging.WARNING, logger="mrsynth"):
        train(config, tmp_path / "run", progress=False)
    assert "changes the model's input contract" not in caplog.text
    info = Model.load(tmp_path / "run" / "model").info
    assert (info.spec.grid_mm, info.spec.axis, info.spec.brain_only) == (1.0, "axial", True)
    assert info.training["init"] == "pretrained" and "fine-tuned from pretrained" in info.name()
    _compare_run(tmp_path / "run", config, fed)
    changed = load_config(None, settings + ["data.grid_mm=0", "optim.epochs=1"], ["finetune"])
    assert changed.data.grid_mm == 0.0
    with caplog.at_level(logging.WARNING, logger="mrsynth"):
        train(changed, tmp_path / "native", progress=False)
    assert "changes the model's input contract: grid_mm 1.0 -> 0.0" in caplog.text


@pytest.mark.slow
def test_the_synthesis_recipe_feeds_training_and_prediction_the_same_input(label_maps, tmp_path, fed):
    from collections import deque

    from test_pretrain import tiny

    from mrsynth.simulate.engine import EngineSettings, engine_subject
    from mrsynth.training.pretrain import pretrain
    from mrsynth.training.synthesis_recipe import SubjectStream, SynthesisRecipe, crops_at, phases, subject_seed

    recipe = SynthesisRecipe(tiny(label_maps, 2))
    folder = pretrain(recipe, tmp_path / "run", progress=False)
    phase = phases(recipe.config)[0]
    path = str(next(label_maps.iterdir()))
    raw = engine_subject(path, subject_seed(phase.seed, 0), EngineSettings(pathology=phase.pathology))
    pool = deque([(0, *SubjectStream([path], phase.seed, 0, EngineSettings(), recipe.spec).volumes(raw))])
    z = int(np.flatnonzero(raw.brain.any(axis=(0, 1)))[len(np.flatnonzero(raw.brain.any(axis=(0, 1)))) // 2])
    row, col = (int(np.flatnonzero(raw.brain[:, :, z].any(axis=a)).min()) for a in (1, 0))
    config = recipe.config
    trained = crops_at(pool, [(0, z, row, col, False)], config, recipe.spec, phase)[0][0].numpy()
    Model.load(folder).predict_volume(raw.t1, raw.affine, mask=raw.normalizing)
    size = config.crop
    np.testing.assert_allclose(fed_at(fed, z, row, col, size), trained, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_the_segmenter_recipe_feeds_training_and_prediction_the_same_input(label_maps, tmp_path, fed):
    from test_pretrain import tiny_segmenter

    from mrsynth.masks import segmenter
    from mrsynth.simulate.anatomy import label_map_anatomy
    from mrsynth.simulate.subject import simulate_subject
    from mrsynth.training.pretrain import pretrain
    from mrsynth.training.segmenter_recipe import (
        TRAINING_VARIATION,
        CropSampler,
        SegmenterRecipe,
        _simulate_map,
        crops_at,
    )

    recipe = SegmenterRecipe(tiny_segmenter(label_maps, 2))
    folder = pretrain(recipe, tmp_path / "run", progress=False)
    path, seed = next(label_maps.iterdir()), 10_000 + 100 * 1
    sampler = CropSampler(_simulate_map((str(path), [seed])))
    origin = sampler.origin(np.random.default_rng(0), recipe.config)
    trained = crops_at(sampler, [origin], recipe.config, recipe.spec)[0][0].numpy()  # before augmentation
    raw = simulate_subject(label_map_anatomy(path), seed, segmenter.WORK_MM, TRAINING_VARIATION)
    model = Model.load(folder)
    segmenter.segment(raw.t1, raw.affine, (model.network, model.info))
    _, z, (row, col) = origin
    np.testing.assert_allclose(fed_at(fed, z, row, col, recipe.config.crop), trained, rtol=1e-5, atol=1e-5)
