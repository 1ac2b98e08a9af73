"""Property-based fuzzing of training settings: random ``--set field=value`` through ``mrsynth train``.

Every value ends in a clean refusal (exit 2, one line naming the setting, nothing written) or a run the settings
allow; never a traceback, never an "internal error", and never a model exported from a value that no training
can use (the oracle below, written apart from the settings' own checks).  A short tier runs in the quick loop
(``train --check``); the long tier (>= 500 values, some of them trained for real) is `slow` and `long`:
`make test-long`, not `make test`.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from pathlib import Path

import pytest
from conftest import TINY, record
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mrsynth.networks import kinds, parameters
from mrsynth.training import load_config


def _fields() -> list[str]:
    """Every setting a user can --set, the parameters of every network kind included."""
    names = []
    config = load_config()
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name == "model":
            names += ["model.kind", "model.lookup"]
            names += [f"model.{p.name}" for kind in kinds(trainable=True) for p in parameters(kind)]
        elif dataclasses.is_dataclass(value):
            names += [f"{f.name}.{g.name}" for g in dataclasses.fields(value)]
        else:
            names.append(f.name)
    return sorted(set(names))


FIELDS = _fields()
#: Settings whose allowed values can make one training run long (many epochs, huge networks or batches,
#: worker processes): fuzzed through ``--check`` only, never trained.
SLOW_TO_TRAIN = {
    "optim.epochs",
    "optim.batch_size",
    "model.width",
    "model.features",
    "model.layers",
    "data.patch_size",
    "data.tile_size",
    "data.context",
    "workers",
    "bn_recalibration_batches",
    "val_recalibration_batches",
    "data.max_patches_per_epoch",
    "data.max_eval_patches",
    "compile",
}
VALUES = st.one_of(
    st.integers(-(10**9), 10**9).map(str),
    st.integers(-3, 20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(
        [
            "",
            "0",
            "-1",
            "1e400",
            "nan",
            "true",
            "false",
            "yes",
            "cuda",
            "cuda:7",
            "mps",
            "gpu",
            "1,2,3",
            "0.8,0.1,0.1",
            "4,4,4,4,4,4",
            "robust",
            "tiles",
            "within",
            "unet",
            "fcn",
            "l1+ssim",
            "=",
            ",",
            "none",
            "batch",
            "001",
            "002,003",
            "abc",
        ]
    ),
    st.text(max_size=12),
)


def _obviously_unusable(field: str, value: str) -> bool:
    """The oracle: values no training can use, stated without the settings' own checks."""
    try:
        number = float(value)
    except ValueError:
        number = None
    if field in (
        "optim.epochs",
        "optim.batch_size",
        "optim.lr",
        "optim.eps",
        "data.patch_size",
        "data.tile_size",
        "data.stride",
        "model.layers",
        "model.width",
    ):
        return number is None or not math.isfinite(number) or number <= 0 or number != number
    if field == "data.channels":
        return value.strip() not in ("1", "9")
    return False


def _run(run_cli, cache: Path, field: str, value: str, check: bool) -> None:
    record("fuzz: settings", "generated --set values" + (" (train --check)" if check else " (trained)"))
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        args = ["train", "--cache", cache, "--train", "001", "--val", "002", "--test", "003", "--out", run]
        for setting in TINY + ["optim.epochs=1", "data.max_patches_per_epoch=32"]:
            args += ["--set", setting]
        code, out, err = run_cli(*args, "--set", f"{field}={value}", *(["--check"] if check else []))
        assert "Traceback" not in err and "internal error" not in err, (field, value, err)
        if code == 2:
            assert err.strip().count("\n") == 0 and err.startswith("mrsynth: error:"), (field, value, err)
            assert not run.exists(), (field, value, "a refused run wrote its folder")
            record("fuzz: settings", "refused: exit 2, one line, nothing written")
            return
        exported = (run / "model" / "model.json").exists()
        assert not (exported and _obviously_unusable(field, value)), (field, value, "exported from bad settings")
        if code == 1:
            assert "training diverged" in err, (field, value, err)
            record("fuzz: settings", "training diverged: exit 1, said so, no model exported")
            assert not exported
            return
        assert code == 0, (field, value, code, err)
        record("fuzz: settings", "allowed: checked" if check else "allowed: trained and exported")
        assert check or exported


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(FIELDS), value=VALUES)
def test_fuzz_settings_short(cache, run_cli, field, value):
    _run(run_cli, cache, field, value, check=True)


@pytest.mark.slow
@pytest.mark.long
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(FIELDS), value=VALUES, train=st.integers(0, 9))
def test_fuzz_settings_long(cache, run_cli, field, value, train):
    """>= 500 values through ``train --check``; one in ten of the quick-to-train settings trained for real."""
    _run(run_cli, cache, field, value, check=not (train == 0 and field not in SLOW_TO_TRAIN))


def test_the_fuzzed_fields_are_every_setting():
    assert {
        "optim.epochs",
        "optim.lr",
        "data.channels",
        "device",
        "model.layers",
        "model.features",
        "augment.mask_jitter",
        "seed",
    } <= set(FIELDS)
    assert len(FIELDS) >= 50, len(FIELDS)


# --------------------------------------------------------------------------- pretraining settings

#: A pretraining of a second or two: the synthesis recipe on a tiny network, one or two steps.
TINY_PRETRAIN = ["batch=2", "crop=32", "features=4,4,8,8,8,4", "pool=1", "subject_every=100", "workers=0"]
TINY_PRETRAIN += ["map_indices=1", "checkpoint_every=1"]
#: Recipe settings whose allowed values can make a pretraining long or large: refused or not, never run.
SLOW_TO_PRETRAIN = {"steps", "lesion_steps", "batch", "crop", "features", "pool", "workers", "context", "map_indices"}


def _pretrain_fields() -> list[str]:
    from mrsynth.training.synthesis_recipe import SynthesisConfig

    return [f.name for f in dataclasses.fields(SynthesisConfig) if f.name not in ("maps",)]


PRETRAIN_FIELDS = _pretrain_fields()


def _pretrain_oracle(field: str, value: str) -> bool:
    """Values no pretraining can use, stated without the recipe's own checks."""
    try:
        number = float(value)
    except ValueError:
        number = None
    if field in ("batch", "crop", "lr", "lesion_lr", "pool", "subject_every", "checkpoint_every"):
        return number is None or not math.isfinite(number) or number <= 0
    return False


def _pretrain(run_cli, maps: Path, field: str, value: str) -> None:
    record("fuzz: pretrain settings", "generated --set values")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        args = ["pretrain", out, "--maps", maps, "--steps", "1", "--lesion-steps", "1", "--device", "cpu"]
        for setting in TINY_PRETRAIN:
            args += ["--set", setting]
        if field in SLOW_TO_PRETRAIN:  # checked, never run: an allowed value may be hours of work
            code, _, err = _checked_only(maps, field, value)
        else:
            code, _, err = run_cli(*args, "--set", f"{field}={value}")
        assert "Traceback" not in err and "internal error" not in err, (field, value, err)
        if code == 2:
            assert err.strip().count("\n") == 0 and err.startswith("mrsynth: error:"), (field, value, err)
            assert not out.exists(), (field, value, "a refused pretraining wrote its folder")
            record("fuzz: pretrain settings", "refused: exit 2, one line, nothing written")
            return
        assert code == 0, (field, value, code, err)
        exported = (out / "model" / "model.json").exists()
        assert not (exported and _pretrain_oracle(field, value)), (field, value, "exported from bad settings")
        record("fuzz: pretrain settings", "allowed: pretrained and exported" if exported else "allowed: checked")


def _checked_only(maps: Path, field: str, value: str):
    """The recipe settings read and checked as ``pretrain`` reads them, nothing run: (exit code, "", message)."""
    from mrsynth.errors import InputError
    from mrsynth.training.recipe_settings import check_settings, parse_settings
    from mrsynth.training.synthesis_recipe import SynthesisConfig

    settings = TINY_PRETRAIN + [f"{field}={value}"]
    try:
        config = SynthesisConfig(maps=str(maps), **parse_settings(SynthesisConfig, settings))
        check_settings(config)
    except InputError as error:
        return 2, "", f"mrsynth: error: {error}"
    return 0, "", ""


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(PRETRAIN_FIELDS), value=VALUES)
def test_fuzz_pretrain_settings_short(label_maps, run_cli, field, value):
    _pretrain(run_cli, label_maps, field, value)


@pytest.mark.slow
@pytest.mark.long
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(PRETRAIN_FIELDS), value=VALUES)
def test_fuzz_pretrain_settings_long(label_maps, run_cli, field, value):
    _pretrain(run_cli, label_maps, field, value)
