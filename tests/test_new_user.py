"""What a hostile new user found (issue 28), one regression test each: bad settings, work thrown away, silent
partial scores, run folders tied to a working directory, outputs nobody would expect."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import TINY, write_dataset

from mrsynth.data import list_prepared, prepare_all
from mrsynth.inference import Model
from mrsynth.io import discover

TRAIN = ["--train", "001", "--val", "002", "--test", "003"]


def _train(run_cli, cache, out, *settings):
    args = ["train", "--cache", cache, *TRAIN, "--out", out, "--epochs", "1"]  # a later --epochs wins
    for setting in TINY:
        args += ["--set", setting]
    return run_cli(*args, *settings)


@pytest.mark.parametrize(
    "settings, named",
    [
        (["--set", "optim.epochs=-1"], "optim.epochs = -1"),
        (["--epochs", "0"], "optim.epochs = 0"),
    ],
)
def test_1_an_untrainable_epoch_count_is_refused_and_nothing_is_written(cache, tmp_path, run_cli, settings, named):
    code, out, err = _train(run_cli, cache, tmp_path / "run", *settings)
    assert code == 2 and named in err and "must be" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "setting, named",
    [
        ("optim.lr=-0.1", "optim.lr = -0.1: must be above 0"),
        ("optim.batch_size=0", "optim.batch_size = 0: must be 1 to 4096"),
        ("data.channels=5", "data.channels = 5: must be one of 1, 9"),
        ("data.patch_size=-1", "data.patch_size = -1: must be 8 to 1024"),
        ("device=cuda", "device = 'cuda': must be auto or cpu here"),
    ],
)
def test_2_bad_settings_are_bad_input_not_internal_errors(cache, tmp_path, run_cli, setting, named):
    if setting == "device=cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    code, _, err = _train(run_cli, cache, tmp_path / "run", "--set", setting)
    assert code == 2 and named in err and "internal error" not in err, err
    assert not (tmp_path / "run").exists()


def test_2_a_network_too_small_for_its_patches_is_refused_before_training(cache, tmp_path, run_cli):
    code, _, err = _train(run_cli, cache, tmp_path / "run", "--set", "model.kind=unet", "--set", "data.patch_size=8")
    assert code == 2 and "data.patch_size = 8: a unet network needs at least 16" in err, err
    assert not (tmp_path / "run").exists()


def test_1_2_train_check_says_what_training_would_refuse_and_writes_nothing(cache, tmp_path, run_cli):
    code, out, err = _train(run_cli, cache, tmp_path / "run", "--check")
    summary = json.loads(out)
    assert code == 0 and summary["train_patches"] > 0 and np.isfinite(summary["first_batch_loss"]), err
    assert not (tmp_path / "run").exists()
    code, _, err = _train(run_cli, cache, tmp_path / "run", "--check", "--set", "optim.lr=0")
    assert code == 2 and "optim.lr = 0" in err


def test_3_masks_checks_its_output_before_segmenting(tmp_path, run_cli, monkeypatch):
    from mrsynth.masks import files

    def never(*args, **kwargs):
        raise AssertionError("segmented before the output folder was checked")

    monkeypatch.setattr(files, "compute_masks", never)
    root = write_dataset(tmp_path / "data", 1, "hcp", shape=(20, 24, 18))
    t1 = discover(root)[0].t1
    (tmp_path / "a-file").write_text("")
    code, _, err = run_cli("masks", t1, "--out", tmp_path / "a-file" / "masks")
    assert code == 2 and "is not a folder" in err, err


def test_4_evaluate_names_subjects_without_predictions_and_predictions_without_references(
    cache, tmp_path, run_cli, trained
):
    run, _, _ = trained
    subjects = list_prepared(cache)
    out = tmp_path / "pred"
    code, _, err = run_cli(
        "predict", "--model", run / "model", "--subject", subjects[0].folder, "--out", out / f"{subjects[0].id}.nii.gz"
    )
    assert code == 0, err
    shutil.copy(out / f"{subjects[0].id}.nii.gz", out / "stranger.nii.gz")
    code, text, err = run_cli("evaluate", "--pred", out, "--ref", cache)
    assert code == 0 and subjects[0].id in text
    assert "reference subject(s) without a prediction: 002, 003" in err and "stranger.nii.gz" in err, err
    code, _, err = run_cli("evaluate", "--pred", out, "--ref", cache, "--strict")
    assert code == 2 and "002, 003" in err and "stranger.nii.gz" in err and "--strict" in err


def test_5_a_run_reopens_from_any_folder_and_moved_with_its_cache(tmp_path, run_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_dataset(tmp_path / "project" / "data", 3, "hcp", shape=(40, 48, 36))
    monkeypatch.chdir(tmp_path / "project")
    prepare_all(discover("data"), "cache", progress=False)
    code, _, err = _train(run_cli, "cache", "run")  # relative paths, as a user types them
    assert code == 0, err
    monkeypatch.chdir(tmp_path)  # another folder
    code, out, err = run_cli("baselines", "project/run")
    assert code == 0 and "intensity-map" in out, err
    shutil.move(tmp_path / "project", tmp_path / "moved")  # the run and its cache moved together
    code, _, err = run_cli("baselines", "moved/run")
    assert code == 0, err
    shutil.move(tmp_path / "moved" / "run", tmp_path / "run-alone")  # the run alone
    shutil.move(tmp_path / "moved" / "cache", tmp_path / "cache-elsewhere")
    code, _, err = run_cli("baselines", "run-alone")
    assert code == 2 and "looked in" in err and "cache" in err and "--cache" in err, err
    code, _, err = run_cli("baselines", "run-alone", "--cache", tmp_path / "cache-elsewhere")
    assert code == 0, err


def test_6_predictions_are_never_negative_and_the_table_is_zero_outside_the_brain(trained, tmp_path):
    from mrsynth.training import fit_for_run

    run, _, cache = trained
    subject = list_prepared(cache)[0]
    network = Model.load(run / "model").predict(subject)
    assert network.min() >= 0
    table = Model.load(fit_for_run(run)["intensity-map"]).predict(subject)
    outside = ~subject.native().brain
    assert outside.any() and not table[outside].any() and table[~outside].min() >= 0


def test_6_the_sidecar_holds_numbers_and_says_negative_values_are_zero(trained, tmp_path, run_cli):
    run, _, _ = trained
    root = write_dataset(tmp_path / "bids", 1, "bids", shape=(20, 24, 18))
    code, _, err = run_cli("predict", "--model", run / "model", "--data", root, "--out-dir", tmp_path / "out")
    assert code == 0, err
    sidecar = json.loads(next((tmp_path / "out").rglob("*_T2w.json")).read_text())["mrsynth"]
    assert isinstance(sidecar["model"]["description"]["training"]["train_loss"], float)
    assert "set to 0" in sidecar["negative_values"]


def test_6_grid_errors_name_what_the_file_was_compared_with(trained, tmp_path, run_cli):
    run, _, cache = trained
    subject = list_prepared(cache)[0]
    prediction = tmp_path / "p.nii.gz"
    assert run_cli("predict", "--model", run / "model", "--subject", subject.folder, "--out", prediction)[0] == 0
    other = tmp_path / "other.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((5, 5, 5), np.float32), np.eye(4)), str(other))
    code, _, err = run_cli("view", prediction, "--ref", other, "--out", tmp_path / "v.html")
    assert code == 2 and "grid differs from the prediction p.nii.gz" in err and "T1w" not in err, err
    code, _, err = run_cli("evaluate", "--pred", other, "--ref", prediction, "--mask", prediction)
    assert code == 2 and "grid differs from the reference p.nii.gz" in err and "T1w" not in err, err


def test_6_a_setting_of_the_wrong_type_is_named_with_the_type_a_person_reads(cache, tmp_path, run_cli):
    code, _, err = _train(run_cli, cache, tmp_path / "run", "--set", "optim.epochs=abc")
    assert code == 2 and "optim.epochs = 'abc': must be a whole number" in err and "class" not in err, err


def test_6_masks_of_an_empty_volume_say_what_is_wrong_in_the_default_methods_words(tmp_path, run_cli):
    path = tmp_path / "empty.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((20, 20, 20), np.float32), np.eye(4)), str(path))
    code, _, err = run_cli("masks", path, "--out", tmp_path / "out")
    assert code == 2 and "register" not in err and "no brain can be found" in err, err
