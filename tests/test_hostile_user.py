"""What a hostile new user found in predict, pretrain and fine-tuning (issue 40), one regression test per point:
an input overwritten, work lost, silent wrong outputs, misleading messages.  The rules they hold are stated once in
docs/reliability.md."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import write_label_map

from mrsynth.io.fixtures import make_subject, save_nifti, write_dataset
from mrsynth.training.pretrain import CHECKPOINT, LOG

MRSYNTH = [sys.executable, "-m", "mrsynth"]
#: A pretraining of seconds: the synthesis recipe on a tiny network and crops.
TINY_PRETRAIN = ["batch=2", "crop=32", "features=4,4,8,8,8,4", "pool=2", "subject_every=1000", "workers=0"]


def _pretrain_args(out, maps, *more) -> list[str]:
    args = ["pretrain", str(out), "--maps", str(maps), "--device", "cpu"]
    for setting in TINY_PRETRAIN:
        args += ["--set", setting]
    return args + [str(m) for m in more]


@pytest.fixture(scope="module")
def head(tmp_path_factory) -> dict:
    """A small head at 1.3 mm (not the pretrained model's grid): T1w, T2w, brain mask and segmentation files."""
    folder = tmp_path_factory.mktemp("head")
    subject = make_subject(shape=(40, 46, 38), voxel_size=1.3)
    return {
        name: save_nifti(getattr(subject, name).astype(np.float32), subject.affine, folder / f"{name}.nii.gz")
        for name in ("t1", "t2", "mask", "seg")
    }


@pytest.fixture(scope="module")
def maps(tmp_path_factory) -> Path:
    return write_label_map(tmp_path_factory.mktemp("maps"))


def _bytes(path) -> bytes:
    return Path(path).read_bytes()


# --------------------------------------------------------------------------- 1: an input overwritten


@pytest.mark.parametrize("role", ["t1", "mask"])
def test_1_an_output_that_is_an_input_is_refused_and_the_input_kept(head, tmp_path, run_cli, role):
    copies = {name: tmp_path / path.name for name, path in head.items()}
    for name, path in head.items():
        copies[name].write_bytes(_bytes(path))
    before = _bytes(copies[role])
    link = tmp_path / "link.nii.gz"
    link.symlink_to(copies[role])
    for out in (copies[role], link):
        code, _, err = run_cli("predict", "--t1", copies["t1"], "--mask", copies["mask"], "--out", out)
        assert code == 2 and f"is the --{role} input" in err and len(err.strip().splitlines()) == 1, err
        assert _bytes(copies[role]) == before


def test_1_an_output_folder_that_is_the_input_dataset_is_refused(tmp_path, run_cli):
    root = write_dataset(tmp_path / "bids", 1, "bids", shape=(20, 24, 18))
    files = sorted(p for p in root.rglob("*") if p.is_file())
    code, _, err = run_cli("predict", "--data", root, "--out-dir", root)
    assert code == 2 and "is the --data input" in err, err
    assert sorted(p for p in root.rglob("*") if p.is_file()) == files


# --------------------------------------------------------------------------- 2: fine-tuning keeps the contract


@pytest.mark.slow
def test_2_fine_tuning_keeps_the_pretrained_models_grid_and_brain_only_output_and_names_its_parent(
    cache, head, tmp_path, run_cli
):
    args = ["train", "--cache", cache, "--train", "001", "--test", "003", "--preset", "finetune", "--out"]
    tiny = ["--set", "data.tile_size=32", "--set", "data.max_patches_per_epoch=8", "--epochs", "1"]
    code, _, err = run_cli(*args, tmp_path / "run", *tiny)
    assert code == 0, err
    info = json.loads((tmp_path / "run" / "model" / "model.json").read_text())
    assert (info["spec"]["grid_mm"], info["spec"]["brain_only"], info["training"]["init"]) == (1.0, True, "pretrained")
    code, _, err = run_cli("predict", "--model", tmp_path / "run" / "model", "--t1", head["t1"], "--mask",
                           head["mask"], "--out", tmp_path / "t2w.nii.gz")  # fmt: skip
    assert code == 0, err
    image = nib.load(str(tmp_path / "t2w.nii.gz"))
    brain = np.asarray(nib.load(str(head["mask"])).dataobj) > 0
    volume = np.asarray(image.dataobj)
    assert not volume[~brain].any() and volume[brain].any()  # no bright frame around the head
    assert b"fine-tuned from pretrained" in bytes(image.header["descrip"])


# --------------------------------------------------------------------------- 3, 4: pretraining says and keeps


def test_3_pretrain_runs_the_steps_asked_and_says_what_will_run(maps, tmp_path, run_cli):
    code, _, err = run_cli(*_pretrain_args(tmp_path / "run", maps, "--steps", 3, "--set", "map_indices=1"))
    assert code == 0, err
    assert "3 steps in all (main 3)" in err and "no lesion phase" in err
    assert "step 3 of 3" in err  # progress in the log where no bar is drawn
    assert (tmp_path / "run" / LOG).read_text().splitlines()[-1].split(" step ")[1].startswith("3/3")


@pytest.mark.slow
@pytest.mark.parametrize(
    "stop",
    [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.long)],  # the same path: long tier
)
def test_4_an_interrupted_pretraining_writes_its_checkpoint_and_resumes_from_it(maps, tmp_path, stop):
    args = _pretrain_args(tmp_path / "run", maps, "--steps", 120, "--set", "map_indices=1", "--set",
                          "checkpoint_every=100000")  # fmt: skip
    process = subprocess.Popen(MRSYNTH + args, stderr=subprocess.PIPE, text=True)
    for line in process.stderr:  # the first progress line: steps have run, no checkpoint written yet
        if "step 50 of 120" in line:
            break
    process.send_signal(stop)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 128 + stop and "checkpoint written" in err, err
    step = torch.load(tmp_path / "run" / CHECKPOINT, weights_only=True)["step"]
    assert 50 <= step < 120
    done = subprocess.run(MRSYNTH + args + ["--resume"], capture_output=True, text=True)
    assert done.returncode == 0 and f"resuming from the checkpoint of step {step}" in done.stderr, done.stderr[-2000:]


def test_4_a_resume_before_the_first_checkpoint_says_there_is_none(maps, tmp_path, run_cli):
    (tmp_path / "run").mkdir()
    code, _, err = run_cli(*_pretrain_args(tmp_path / "run", maps, "--resume"))
    assert code == 2 and "no checkpoint in it yet" in err and "Errno" not in err, err


# --------------------------------------------------------------------------- 5: bad label maps


def _maps_of(folder: Path, make) -> Path:
    folder.mkdir()
    for k in range(2):
        make(folder / f"map{k}.nii.gz", k)
    return folder


@pytest.mark.parametrize("kind", ["truncated", "float T1w", "int16 T1w", "uint8 T1w"])
def test_5_bad_label_maps_are_refused_in_one_line_before_anything_runs(head, maps, tmp_path, run_cli, kind):
    t1 = np.asarray(nib.load(str(head["t1"])).dataobj)
    affine = np.eye(4)

    def make(path, k):
        if kind == "truncated":
            path.write_bytes(_bytes(next(maps.iterdir()))[:2000])
        else:
            dtype = {"float T1w": np.float32, "int16 T1w": np.int16, "uint8 T1w": np.uint8}[kind]
            noisy = t1 / t1.max() * (250 if dtype == np.uint8 else 3000) + np.random.default_rng(k).normal(
                0, 3, t1.shape
            )
            nib.save(nib.Nifti1Image(np.clip(noisy, 0, None).astype(dtype), affine), str(path))

    folder = _maps_of(tmp_path / "maps", make)
    code, _, err = run_cli(*_pretrain_args(tmp_path / "run", folder, "--steps", 2, "--set", "map_indices=1,2"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "map0.nii.gz" in err, err
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- 6: wrong inputs with a mask


def test_6_a_constant_image_is_refused_with_a_mask_as_without(head, tmp_path, run_cli):
    constant = save_nifti(np.full((30, 30, 30), 7, np.float32), np.eye(4), tmp_path / "constant.nii.gz")
    mask = save_nifti(np.ones((30, 30, 30), np.uint8), np.eye(4), tmp_path / "mask.nii.gz")
    for extra in ([], ["--mask", mask]):
        code, _, err = run_cli("predict", "--t1", constant, *extra, "--out", tmp_path / "out.nii.gz")
        assert code == 2 and "constant" in err, err
    assert not (tmp_path / "out.nii.gz").exists()


def test_6_a_t1w_stored_with_a_negative_offset_is_shifted_and_said_so_once(head, tmp_path, run_cli):
    image = nib.load(str(head["t1"]))
    offset = np.rint(np.asarray(image.dataobj)).astype(np.int16) - 1000
    shifted = save_nifti(offset, image.affine, tmp_path / "offset.nii.gz")
    code, _, err = run_cli("predict", "--t1", shifted, "--mask", head["mask"], "--out", tmp_path / "a.nii.gz")
    assert code == 0 and err.count("shifted up so that the lowest is 0") == 1, err
    whole = save_nifti(offset.astype(np.float32) + 1000, image.affine, tmp_path / "whole.nii.gz")
    code, _, err = run_cli("predict", "--t1", whole, "--mask", head["mask"], "--out", tmp_path / "b.nii.gz")
    a, b = (np.asarray(nib.load(str(tmp_path / f"{n}.nii.gz")).dataobj) for n in "ab")
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-2)  # as if the file had no offset


def test_6_a_soft_mask_is_read_as_the_voxels_of_at_least_one_half_everywhere(head, tmp_path, run_cli):
    image = nib.load(str(head["mask"]))
    brain = np.asarray(image.dataobj) > 0
    soft = np.where(brain, 0.9, 0.2).astype(np.float32)  # a probability map: 0.2 everywhere outside the brain
    path = save_nifti(soft, image.affine, tmp_path / "soft.nii.gz")
    code, _, err = run_cli("predict", "--t1", head["t1"], "--mask", path, "--out", tmp_path / "out.nii.gz")
    assert code == 0 and err.count("soft brain mask") == 1, err
    volume = np.asarray(nib.load(str(tmp_path / "out.nii.gz")).dataobj)
    assert not volume[~brain].any() and volume[brain].any()


def test_6_notes_on_the_inputs_are_recorded_in_the_bids_sidecar(tmp_path, run_cli):
    root = write_dataset(tmp_path / "bids", 1, "bids", shape=(20, 24, 18))
    t1 = next(root.rglob("*_T1w.nii.gz"))
    image = nib.load(str(t1))
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj, np.float32) - 50, image.affine), str(t1))
    code, _, err = run_cli("predict", "--data", root, "--out-dir", tmp_path / "out")
    assert code == 0, err
    notes = json.loads(next((tmp_path / "out").rglob("*_T2w.json")).read_text())["mrsynth"]["input_notes"]
    assert any("shifted up" in note for note in notes), notes


@pytest.mark.slow
def test_6_a_t2w_given_as_the_t1w_is_warned_about_with_a_mask_as_without(run_cli, tmp_path):
    from conftest import require_shared

    folder = require_shared("hcp-mni152")
    t2, mask = (
        _coarser(folder / name, tmp_path) for name in ("MNI152_T2_1mm_brain.nii.gz", "MNI152_T1_1mm_brain_mask.nii.gz")
    )
    for extra in (["--mask", mask], []):
        code, _, err = run_cli("predict", "--t1", t2, *extra, "--out", tmp_path / "out.nii.gz")
        assert code == 0 and err.count("is this a T2w rather than a T1w?") == 1, err


def _coarser(path: Path, folder: Path) -> Path:
    """A slab of 40 axial slices through the middle of the real template: seconds a prediction, not twenty."""
    image = nib.load(str(path))
    data = np.asarray(image.dataobj)[:, :, 60:100]
    affine = image.affine.copy()
    affine[:3, 3] += affine[:3, 2] * 60
    return save_nifti(data, affine, folder / path.name)


# --------------------------------------------------------------------------- 7: messages


def test_7_a_mask_of_mostly_background_is_named_without_an_option_predict_does_not_have(head, tmp_path, run_cli):
    image = nib.load(str(head["t1"]))
    zeros = np.zeros(image.shape, np.float32)
    zeros[:4, :4, :4] = np.asarray(image.dataobj)[20:24, 20:24, 20:24]
    t1 = save_nifti(zeros, image.affine, tmp_path / "t1.nii.gz")
    everywhere = save_nifti(np.ones(image.shape, np.uint8), image.affine, tmp_path / "ones.nii.gz")
    code, _, err = run_cli("predict", "--t1", t1, "--mask", everywhere, "--out", tmp_path / "out.nii.gz")
    assert code == 2 and "--norm" not in err and "mostly" in err, err


def test_7_a_missing_t1w_is_named_before_anything_is_said(tmp_path, run_cli):
    code, _, err = run_cli("predict", "--t1", tmp_path / "nothere.nii.gz", "--out", tmp_path / "out.nii.gz")
    assert code == 2 and err.strip() == f"mrsynth: error: {tmp_path / 'nothere.nii.gz'}: file not found", err


def test_7_a_nifti_without_its_extension_is_named_as_such(head, tmp_path, run_cli):
    bare = tmp_path / "t1"
    bare.write_bytes(_bytes(head["t1"]))
    code, _, err = run_cli("predict", "--t1", bare, "--out", tmp_path / "out.nii.gz")
    assert code == 2 and "not named .nii or .nii.gz" in err, err


def test_7_evaluate_calls_the_reference_the_reference_and_reports_nothing_before_refusing(head, tmp_path, run_cli):
    other = save_nifti(np.zeros((5, 5, 5), np.float32), np.eye(4), tmp_path / "other.nii.gz")
    code, _, err = run_cli("evaluate", "--pred", head["t2"], "--ref", head["t2"], "--mask", other)
    assert code == 2 and "reference T2w" in err and "the T1w" not in err, err
    (tmp_path / "preds").mkdir()
    (tmp_path / "preds" / "nobody.nii.gz").write_bytes(_bytes(head["t2"]))
    cache = tmp_path / "cache"
    from mrsynth.data import prepare_all
    from mrsynth.io import discover

    prepare_all(discover(write_dataset(tmp_path / "data", 1, "hcp", shape=(20, 24, 18))), cache, progress=False)
    code, _, err = run_cli("evaluate", "--pred", tmp_path / "preds", "--ref", cache)
    assert code == 2 and "scored the others" not in err and "no prediction" in err, err


def test_7_a_resume_with_other_settings_says_which(maps, tmp_path, run_cli):
    run = _pretrain_args(tmp_path / "run", maps, "--steps", 2, "--set", "map_indices=1")
    assert run_cli(*run)[0] == 0
    code, _, err = run_cli(*run, "--set", "crop=48", "--resume")
    assert code == 2 and "crop 32 (now 48)" in err, err


def test_7_pretrain_into_a_file_is_refused_as_such(maps, tmp_path, run_cli):
    (tmp_path / "afile").write_text("")
    code, _, err = run_cli(*_pretrain_args(tmp_path / "afile", maps))
    assert code == 2 and "is a file, not a folder" in err, err


# --------------------------------------------------------------------------- 8: small things


def test_8_a_resume_of_nothing_leaves_nothing(maps, tmp_path, run_cli):
    code, _, err = run_cli(*_pretrain_args(tmp_path / "nothere", maps, "--resume"))
    assert code == 2 and "no such folder" in err and not (tmp_path / "nothere").exists(), err


@pytest.mark.parametrize("size", ["0", "-3"])
def test_8_a_batch_size_below_one_is_refused(head, tmp_path, run_cli, size):
    code, _, err = run_cli("predict", "--t1", head["t1"], "--mask", head["mask"], "--out", tmp_path / "o.nii.gz",
                           "--batch-size", size)  # fmt: skip
    assert code == 2 and "--batch-size must be at least 1" in err and not (tmp_path / "o.nii.gz").exists(), err


def test_8_an_output_ending_with_a_slash_names_a_folder_and_is_refused(head, tmp_path, run_cli):
    out = f"{tmp_path / 'out' / 'x.nii.gz'}/"
    code, _, err = run_cli("predict", "--t1", head["t1"], "--mask", head["mask"], "--out", out)
    assert code == 2 and "ends with a slash" in err and not (tmp_path / "out").exists(), err


def test_8_a_segmentation_the_model_does_not_read_is_said_to_be_unused(head, tmp_path, run_cli):
    code, _, err = run_cli("predict", "--t1", head["t1"], "--seg", head["seg"], "--mask", head["mask"], "--out",
                           tmp_path / "out.nii.gz")  # fmt: skip
    assert code == 0 and "--seg is not used" in err, err


def test_8_a_resume_of_a_finished_pretraining_changes_nothing(maps, tmp_path, run_cli):
    args = _pretrain_args(tmp_path / "run", maps, "--steps", 2, "--set", "map_indices=1")
    assert run_cli(*args)[0] == 0
    card = tmp_path / "run" / "model" / "MODEL_CARD.md"
    before, when = card.read_text(), card.stat().st_mtime_ns
    time.sleep(0.01)
    code, _, err = run_cli(*args, "--resume")
    assert code == 0 and "finished already" in err, err
    assert card.read_text() == before and card.stat().st_mtime_ns == when
