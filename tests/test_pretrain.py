"""Pretraining (mrsynth.training.pretrain) with its two recipes: a run on a tiny network resumes from its checkpoint
and exports a model that loads, with its recipe and a card; the card's wall time comes from the progress log; bad
folders and label maps are refused before anything is computed."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import write_label_map
from safetensors.torch import load_file

from mrsynth.errors import InputError
from mrsynth.networks import load_model
from mrsynth.training.loop import Loop
from mrsynth.training.model_card import CARD
from mrsynth.training.pretrain import CHECKPOINT, RECORD, logged_wall_time, pretrain
from mrsynth.training.segmenter_recipe import SegmenterConfig, SegmenterRecipe
from mrsynth.training.synthesis_recipe import SynthesisConfig, SynthesisRecipe


@pytest.fixture(scope="module")
def maps(tmp_path_factory):
    return write_label_map(tmp_path_factory.mktemp("maps"))


def tiny(maps, steps: int) -> SynthesisConfig:
    return SynthesisConfig(
        maps=str(maps),
        map_indices=(1,),
        steps=steps,
        batch=2,
        crop=32,
        features=(4, 4, 8, 8, 8, 4),
        pool=2,
        subject_every=3,
        workers=0,
        checkpoint_every=2,
        device="cpu",
    )


def tiny_segmenter(maps, steps: int) -> SegmenterConfig:
    return SegmenterConfig(
        maps=str(maps),
        map_indices=(1,),
        per_map=1,
        steps=steps,
        batch=2,
        crop=32,
        features=(4, 4, 8, 8, 8, 4),
        workers=0,
        checkpoint_every=2,
        device="cpu",
    )


def _interrupt_at(monkeypatch, step: int) -> None:
    original = Loop.train_step

    def interrupted(self, *args):
        if self.step == step:
            raise KeyboardInterrupt
        return original(self, *args)

    monkeypatch.setattr(Loop, "train_step", interrupted)


@pytest.mark.slow
def test_an_interrupted_pretraining_resumes_to_the_same_weights_with_its_recipe_and_card(maps, tmp_path, monkeypatch):
    """Interrupted in its lesion phase (steps 6-9), after the checkpoint of step 8."""
    config = replace(tiny(maps, 6), lesion_steps=4)
    whole = pretrain(SynthesisRecipe(config), tmp_path / "whole", progress=False)
    _interrupt_at(monkeypatch, 9)
    with pytest.raises(KeyboardInterrupt):
        pretrain(SynthesisRecipe(config), tmp_path / "run", progress=False)
    monkeypatch.undo()
    with pytest.raises(InputError, match="--resume it"):
        pretrain(SynthesisRecipe(config), tmp_path / "run", progress=False)
    folder = pretrain(SynthesisRecipe(config), tmp_path / "run", resume=True, progress=False, command="mrsynth pt X")
    (model, info), (reference, _) = load_model(folder), load_model(whole)
    for name, tensor in reference.state_dict().items():
        assert torch.equal(tensor, model.state_dict()[name]), name
    assert info.kind == "unet" and info.spec.brain_only and info.spec.grid_mm == 1.0
    assert {t.dtype for t in load_file(folder / "model.safetensors").values()} == {torch.float16}
    recipe = json.loads((tmp_path / "run" / RECORD).read_text())
    assert recipe["resumed_at_step"] == 8 and recipe["config"]["steps"] == 6 and recipe["recipe"] == "synthesis"
    card = (folder / CARD).read_text()
    assert "`mrsynth pt X`" in card and "resumed at step 8" in card and "lesion phase of 4 steps" in card


@pytest.mark.slow
def test_the_segmenter_recipe_resumes_to_the_same_weights_and_exports_a_segmenter(maps, tmp_path, monkeypatch):
    config = tiny_segmenter(maps, 4)
    whole = pretrain(SegmenterRecipe(config), tmp_path / "whole", progress=False)
    _interrupt_at(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        pretrain(SegmenterRecipe(config), tmp_path / "run", progress=False)
    monkeypatch.undo()
    folder = pretrain(SegmenterRecipe(config), tmp_path / "run", resume=True, progress=False)
    (model, info), (reference, _) = load_model(folder), load_model(whole)
    for name, tensor in reference.state_dict().items():
        assert torch.equal(tensor, model.state_dict()[name]), name
    assert info.segments and info.spec.grid_mm == 1.4 and info.training["pretraining"]["recipe"] == "segmenter"


def test_the_wall_time_counts_each_session_and_skips_the_interruption():
    log = "\n".join(
        [
            "2026-01-01 10:00:00 step 50/300: loss 1.0, subjects 2",
            "2026-01-01 10:01:00 step 100/300: loss 0.9, subjects 4",
            "2026-01-01 10:02:00 step 150/300: loss 0.8, subjects 6",  # killed here; checkpoint at 100
            "2026-01-01 12:00:00 step 150/300: loss 0.8, subjects 6",  # resumed two hours later
            "2026-01-01 12:01:00 step 200/300: loss 0.7, subjects 8",
        ]
    )
    # 2 minutes + one interval (1 minute) for steps 0-50, then 1 minute + 1 minute for steps 100-150
    assert logged_wall_time(log) == {"sessions": 2, "logged_wall_seconds": 5 * 60}
    assert logged_wall_time("") == {"sessions": 0, "logged_wall_seconds": 0}
    # a resume from a checkpoint at the last logged step (into the lesion phase) repeats no step: the pause tells
    resumed = log.replace("12:00:00 step 150", "12:00:00 step 200").replace("12:01:00 step 200", "12:01:00 step 250")
    assert logged_wall_time(resumed) == {"sessions": 2, "logged_wall_seconds": 5 * 60}


def test_too_few_label_maps_for_the_recipe_is_a_clean_error(maps, tmp_path):
    with pytest.raises(InputError, match="1 label maps here"):
        pretrain(SynthesisRecipe(replace(tiny(maps, 2), map_indices=(1, 2))), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_lesion_phase_crops_find_the_lesions_and_weigh_them_more(maps):
    """The lesion phase centres crops near lesion pixels and weighs them in the loss; the main phase does neither."""
    from collections import deque

    from mrsynth.training.synthesis_recipe import crops, phases

    config = replace(tiny(maps, 4), lesion_steps=4, crop=16, batch=8, lesion_crops=1.0, lesion_weight=3.0)
    spec = SynthesisRecipe(config).spec
    main, lesion = phases(config)
    assert (main.start, main.end, lesion.start, lesion.end) == (0, 4, 4, 8) and lesion.seed == main.seed + 1
    assert main.pathology.ms == 0.3 and (lesion.pathology.ms, lesion.pathology.tumour) == config.lesion_odds
    assert phases(tiny(maps, 4)) == [main]
    shape = (30, 96, 96)
    volume = np.ones(shape, np.float32)
    margin = np.ones(shape, bool)
    lesions = np.zeros(shape, np.uint8)
    lesions[12, 70:73, 8:11] = 1  # one small lesion, far from the middle
    pool = deque([(None, volume, volume, margin, lesions, np.argwhere(lesions))])
    _, _, weight = crops(pool, np.random.default_rng(0), config, spec, lesion)
    assert all((w == 3).sum() == 9 for w in weight) and set(weight.unique().tolist()) == {1.0, 3.0}
    _, _, weight = crops(pool, np.random.default_rng(0), config, spec, main)
    assert set(weight.unique().tolist()) == {1.0}


def test_a_resume_before_the_first_checkpoint_says_there_is_none_and_writes_nothing(maps, tmp_path):
    with pytest.raises(InputError, match="no such folder"):
        pretrain(SynthesisRecipe(tiny(maps, 2)), tmp_path / "nothere", resume=True, progress=False)
    assert not (tmp_path / "nothere").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no checkpoint in it yet"):
        pretrain(SynthesisRecipe(tiny(maps, 2)), tmp_path / "empty", resume=True, progress=False)
    assert not (tmp_path / "empty" / CHECKPOINT).exists()
