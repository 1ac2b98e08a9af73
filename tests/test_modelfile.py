"""Model files (mrsynth.networks.modelfile): weights + JSON description, loaded without unpickling code."""

from __future__ import annotations

import json

import pytest
import torch

from mrsynth.errors import InputError
from mrsynth.networks import (
    FCN,
    InputSpec,
    IntensityMap,
    ModelInfo,
    Normalization,
    TissueMean,
    load_model,
    recalibrate_batchnorm,
    save_model,
)


def _info(model: FCN) -> ModelInfo:
    spec = InputSpec(tissue_masks=model.in_channels > 1)
    return ModelInfo("fcn", spec, params={"layers": model.n_layers, "width": model.width}, patch_size=64, stride=32)


def test_save_load_round_trip_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    model = FCN(4, 9)
    recalibrate_batchnorm(model, [torch.randn(4, 9, 16, 16) for _ in range(3)])
    model.eval()
    save_model(tmp_path / "m", model, _info(model))
    loaded, info = load_model(tmp_path / "m")
    x = torch.randn(3, 9, 20, 20)
    assert torch.equal(model(x), loaded(x))
    assert info.norm() == Normalization("robust")
    assert set(p.name for p in (tmp_path / "m").iterdir()) == {"model.safetensors", "model.json"}
    assert not loaded.training


def test_load_refuses_broken_model_folders(tmp_path, run_cli):
    with pytest.raises(InputError, match="not a mrsynth model folder"):
        load_model(tmp_path)
    save_model(tmp_path / "m", FCN(3, 9), _info(FCN(3, 9)))
    (tmp_path / "m" / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(InputError, match="SHA-256 differs"):
        load_model(tmp_path / "m")
    description = json.loads((tmp_path / "m" / "model.json").read_text())
    (tmp_path / "m" / "model.json").write_text(json.dumps(description | {"weights_sha256": ""}))
    with pytest.raises(InputError, match="cannot load the weights"):
        load_model(tmp_path / "m")


def test_lookup_baselines_round_trip_through_model_files(tmp_path):
    for model in (
        TissueMean(torch.arange(14.0)),
        IntensityMap(torch.tensor([0.0, 1.0, 2.0]), torch.tensor([3.0, 1.0, 2.0])),
    ):
        info = ModelInfo(model.kind, InputSpec(tissue_masks=model.in_channels > 1))
        save_model(tmp_path / model.kind, model, info)
        loaded, loaded_info = load_model(tmp_path / model.kind)
        x = torch.randn(2, 9, 8, 8)
        assert type(loaded) is type(model) and loaded_info.kind == model.kind
        assert torch.equal(loaded(x), model(x))
