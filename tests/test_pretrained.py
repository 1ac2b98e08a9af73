"""The shipped pretrained model: loading (its SHA-256 checked), zero-shot prediction of a bare T1w on its own grid,
fine-tuning from it (``--init``)."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest
import torch

from mrsynth.errors import InputError
from mrsynth.io.fixtures import make_subject, save_nifti
from mrsynth.networks import PRETRAINED, load_model, model_folder


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    """A small oblique head at 1.3 mm (not the model's 1 mm RAS grid): T1w, brain mask and T2w files."""
    folder = tmp_path_factory.mktemp("head")
    subject = make_subject(shape=(50, 58, 46), voxel_size=1.3)
    c, s = np.cos(0.3), np.sin(0.3)
    affine = subject.affine.copy()
    affine[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ affine[:3, :3]
    return {
        name: save_nifti(getattr(subject, name).astype(np.float32), affine, folder / f"{name}.nii.gz")
        for name in ("t1", "t2", "mask", "seg")
    }


def test_the_shipped_model_loads_with_its_sha256_checked(tmp_path):
    model, info = load_model(PRETRAINED)
    assert info.kind == "unet" and info.spec.grid_mm == 1.0 and info.spec.brain_only and not info.uses_masks
    assert info.training["pretraining"]["recipe_version"] >= 1 and info.name().startswith("pretrained")
    copy = shutil.copytree(model_folder(PRETRAINED), tmp_path / "copy")
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-8] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(InputError, match="SHA-256 differs"):
        load_model(copy)
    assert (model_folder(PRETRAINED) / "LICENSE").exists() and (model_folder(PRETRAINED) / "MODEL_CARD.md").exists()


def test_zero_shot_predicts_a_bare_t1w_on_its_own_grid(head, tmp_path, run_cli):
    out = tmp_path / "t2w.nii.gz"
    code, _, err = run_cli("predict", "--t1", head["t1"], "--mask", head["mask"], "--out", out)
    assert code == 0, err
    image, source = nib.load(str(out)), nib.load(str(head["t1"]))
    volume = np.asarray(image.dataobj)
    assert image.shape == source.shape and np.allclose(image.affine, source.affine)
    brain = np.asarray(nib.load(str(head["mask"])).dataobj) > 0
    assert np.isfinite(volume).all() and volume.min() >= 0 and not volume[~brain].any() and volume[brain].any()
    assert bytes(image.header["descrip"]).startswith(b"mrsynth") and b"pretrained" in bytes(image.header["descrip"])


def test_zero_shot_without_a_mask_computes_one_and_says_so(head, tmp_path, run_cli):
    code, _, err = run_cli("predict", "--model", "pretrained", "--t1", head["t1"], "--out", tmp_path / "t2w.nii.gz")
    assert code == 0 and "no brain mask given" in err, err


def test_the_bids_sidecar_names_the_pretrained_model_and_its_recipe(tmp_path, run_cli):
    from mrsynth.io.fixtures import write_dataset

    root = write_dataset(tmp_path / "bids", 1, "bids", shape=(30, 34, 28))
    code, _, err = run_cli("predict", "--data", root, "--out-dir", tmp_path / "out")
    assert code == 0, err
    sidecar = json.loads(next((tmp_path / "out").rglob("*_T2w.json")).read_text())["mrsynth"]["model"]
    assert sidecar["name"].startswith("pretrained (recipe") and len(sidecar["weights_sha256"]) == 64


def test_init_starts_from_the_pretrained_weights_and_refuses_another_network(cache, tmp_path):
    from conftest import tiny_config

    from mrsynth.training import Trainer, load_config

    finetune = load_config(None, [f"data.cache={cache}", "data.train=001", "data.test=003"], ["finetune"])
    trainer = Trainer(finetune, tmp_path / "run", progress=False)
    pretrained, _ = load_model(PRETRAINED)
    for name, tensor in pretrained.state_dict().items():
        torch.testing.assert_close(trainer.model.state_dict()[name].float(), tensor.float())
    with pytest.raises(InputError, match="init = 'pretrained': that model's network differs"):
        Trainer(tiny_config(cache, "init=pretrained", "model.kind=fcn"), tmp_path / "other", progress=False)
