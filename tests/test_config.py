"""Configuration (mrsynth.training.config): TOML round trip, presets, and the documentation kept in step."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mrsynth.errors import InputError
from mrsynth.networks import kinds, parameters
from mrsynth.training import PRESETS, load_config, reference_markdown, to_toml

DOCS = Path(__file__).resolve().parents[1] / "docs" / "training.md"


def test_config_round_trips_through_toml(tmp_path):
    config = load_config(None, ["data.train=a,b", "optim.lr=0.01", "seed=3"], presets=["paper"])
    assert config.optim.lr == pytest.approx(0.01) and config.data.norm == "paper" and config.data.train == ["a", "b"]
    (tmp_path / "c.toml").write_text(to_toml(config))
    assert load_config(tmp_path / "c.toml") == config
    with pytest.raises(InputError, match="unknown config field"):
        load_config(None, ["optim.learning_rate=1"])
    with pytest.raises(InputError, match="optim.epochs = .many.: must be a whole number"):
        load_config(None, ["optim.epochs=many"])
    with pytest.raises(InputError, match="unknown preset"):
        load_config(None, [], presets=["nope"])


def test_fast_preset_is_tile_training_with_small_steps_and_user_settings_win():
    config = load_config(None, ["optim.batch_size=4"], presets=["fast"])
    assert (config.data.sampling, config.data.tile_size, config.optim.batch_size) == ("tiles", 64, 4)
    assert load_config(None, [], presets=["fast"]).optim.batch_size == 8


def test_docs_training_md_holds_the_generated_configuration_reference():
    text = DOCS.read_text()
    assert reference_markdown() in text, (
        "docs/training.md is out of date: paste `mrsynth train --list-settings` into it"
    )


def test_reference_names_and_explains_every_field_and_preset():
    reference = reference_markdown()
    config = load_config()
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        names = (
            [f"{f.name}.{g.name}" for g in dataclasses.fields(value)] if dataclasses.is_dataclass(value) else [f.name]
        )
        if f.name == "model":  # kind, lookup, and every kind's own parameters
            names = ["model.kind", "model.lookup"] + [
                f"model.{p.name}" for kind in kinds(trainable=True) for p in parameters(kind)
            ]
        for name in names:
            row = next((line for line in reference.splitlines() if line.startswith(f"| `{name}` |")), None)
            assert row is not None, name
            assert row.rstrip(" |").split("|")[-1].strip(), f"{name} has no explanation"
    for preset in PRESETS:
        assert f"| `{preset}` |" in reference, preset


def test_quality_preset_is_a_t1w_only_unet_and_flags_still_win():
    config = load_config(None, [], presets=["quality"])
    assert (config.model.kind, config.data.channels, config.data.sampling) == ("unet", 1, "tiles")
    assert (config.model.norm, config.model.lookup, config.optim.epochs) == ("none", True, 6)
    assert config.augment.gamma > 0 and config.augment.flips and config.optim.clip > 0
    assert load_config(None, ["data.channels=9"], presets=["quality"]).data.channels == 9
