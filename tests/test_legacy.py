"""Run folders and model files written before the stage packages (mrsynth at commit cfcfcc6, model format 1) still
load, and their models predict what they predicted then (tests/data/legacy-cfcfcc6/README.md says how they were
made)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mrsynth.data import list_prepared, prepare_all
from mrsynth.inference import Model
from mrsynth.io import discover
from mrsynth.io.fixtures import write_dataset
from mrsynth.networks.description import FORMAT
from mrsynth.training import load_run_data, resume_config

LEGACY = Path(__file__).parent / "data" / "legacy-cfcfcc6"
EXPECTED = json.loads((LEGACY / "expected.json").read_text())


@pytest.fixture(scope="module")
def legacy_cache(tmp_path_factory):
    """The fixture subjects the legacy runs were trained on, prepared again (the generator is deterministic)."""
    root = tmp_path_factory.mktemp("legacy")
    write_dataset(root / "data", 3, "hcp", shape=(20, 24, 18))
    prepare_all(discover(root / "data"), root / "cache", progress=False)
    return root / "cache"


@pytest.mark.parametrize("folder", sorted(EXPECTED))
def test_a_format_1_model_file_loads_and_predicts_what_it_did(folder, legacy_cache):
    model = Model.load(LEGACY / folder)
    assert model.info.format == FORMAT and json.loads((LEGACY / folder / "model.json").read_text())["format"] == 1
    subject = {s.id: s for s in list_prepared(legacy_cache)}["003"]
    volume = model.predict(subject).astype(np.float64)
    expected = EXPECTED[folder]
    assert list(volume.shape) == expected["shape"]
    # what it predicted then, with today's output rules: negative values set to 0, and the plain lookup table
    # 0 outside the brain (so compared inside it)
    if getattr(model.network, "brain_only", False):
        brain = subject.native().brain
        assert not volume[~brain].any()
        found, then = volume[brain], [expected["brain_clipped_mean"], expected["brain_clipped_std"]]
    else:
        found, then = volume, [expected["clipped_mean"], expected["clipped_std"]]
    np.testing.assert_allclose([found.mean(), found.std()], then, rtol=1e-4)


def test_format_1_descriptions_keep_only_their_own_kinds_parameters():
    fcn, unet = (Model.load(LEGACY / run / "model").info for run in ("run-fcn", "run-unet"))
    assert (fcn.kind, fcn.params, fcn.lookup) == ("fcn", {"layers": 3, "width": 4}, False)
    assert (unet.kind, unet.params, unet.lookup) == ("unet", {"features": [4] * 6, "norm": "none"}, True)
    table = Model.load(LEGACY / "run-fcn" / "baselines" / "intensity-map").info
    assert (table.kind, table.params, table.in_channels) == ("intensity-map", {}, 1)


@pytest.mark.parametrize("run", ["run-fcn", "run-unet"])
def test_a_run_folder_of_the_flat_layout_reopens_with_its_configuration_split_and_normalization(
    run, legacy_cache, tmp_path
):
    copy = shutil.copytree(LEGACY / run, tmp_path / run)
    config = resume_config(copy, [f"data.cache={legacy_cache}"])  # its config.toml names every kind's parameters
    assert config.model.kind == ("fcn" if run == "run-fcn" else "unet")
    assert config.model.params == Model.load(copy / "model").info.params
    data = load_run_data(copy, config)
    assert data.split.train == ["001"] and data.split.test == ["003"]
    assert data.normalization.method == "robust" and len(data.train) > 0
