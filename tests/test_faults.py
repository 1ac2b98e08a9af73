"""Regression tests for the defects a hostile probe found (issue 14), each named after its defect."""

from __future__ import annotations

import json
import os
import stat

import nibabel as nib
import numpy as np
import pytest
from conftest import tiny_config, write_dataset

from mrsynth.cache import list_prepared, prepare_all
from mrsynth.errors import InputError
from mrsynth.subjects import discover


def _corrupt(path, offset_from_end: int = 100) -> None:
    data = bytearray(path.read_bytes())
    for i in range(offset_from_end, offset_from_end - 16, -1):
        data[-i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_defect_01_corrupted_weights_are_refused_not_predicted_as_nan(trained, tmp_path, run_cli):
    import shutil

    run, _, cache = trained
    model = tmp_path / "model"
    shutil.copytree(run / "model", model)
    _corrupt(model / "model.safetensors")
    code, _, err = run_cli("predict", "--model", model, "--subject", list_prepared(cache)[0].folder,
                           "--out", tmp_path / "p.nii.gz")
    assert code == 2 and "SHA-256" in err and "model.safetensors" in err
    assert not (tmp_path / "p.nii.gz").exists()


def test_defect_01_non_finite_weights_are_refused_even_without_a_checksum(trained, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    from mrsynth.modelfile import load_model

    run, _, _ = trained
    model = tmp_path / "model"
    shutil.copytree(run / "model", model)
    state = load_file(str(model / "model.safetensors"))
    name = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)
    state[name][0] = float("nan")
    save_file(state, str(model / "model.safetensors"))
    description = json.loads((model / "model.json").read_text())
    description["weights_sha256"] = ""  # as written by an mrsynth before checksums
    (model / "model.json").write_text(json.dumps(description))
    with pytest.raises(InputError, match="NaN or Inf"):
        load_model(model)


def test_defect_02_int64_codes_beyond_32_bits_are_refused_not_wrapped(tmp_path):
    root = write_dataset(tmp_path / "data", 1, "hcp", shape=(20, 24, 18))
    seg_path = next(iter(discover(root))).seg
    seg = nib.load(str(seg_path))
    codes = np.asarray(seg.dataobj).astype(np.int64)
    codes[codes == 5001] = 5001 + 2**32  # wraps to 5001 (white matter) under an int32 cast
    nib.save(nib.Nifti1Image(codes, seg.affine, dtype=np.int64), str(seg_path))
    report = prepare_all(discover(root), tmp_path / "cache", progress=False)
    assert report.failed and "do not fit 32 bits" in report.failed[0].message
    assert str(seg_path) in report.failed[0].message


def test_defect_03_a_t1w_with_non_positive_brain_median_fails_train_cleanly(tmp_path):
    from mrsynth.train import train

    root = write_dataset(tmp_path / "data", 3, "hcp", shape=(20, 24, 18))
    t1_path = next(s for s in discover(root) if s.id == "001").t1
    t1 = nib.load(str(t1_path))
    nib.save(nib.Nifti1Image(np.asarray(t1.dataobj) - 1e4, t1.affine), str(t1_path))
    prepare_all(discover(root), tmp_path / "cache", progress=False)
    with pytest.raises(InputError, match="001.*brain median"):
        train(tiny_config(tmp_path / "cache", "optim.epochs=1"), tmp_path / "run", progress=False)


def test_defect_04_predict_refuses_an_unwritable_output_before_computing(trained, tmp_path, run_cli):
    run, _, cache = trained
    subject = list_prepared(cache)[0].folder
    code, _, err = run_cli("predict", "--model", run / "model", "--subject", subject, "--out", tmp_path)
    assert code == 2 and "is a folder" in err
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        code, _, err = run_cli("predict", "--model", run / "model", "--subject", subject,
                               "--out", locked / "p.nii.gz")
        assert code == 2 and "not writable" in err


def test_defect_04_an_os_error_is_one_line_not_a_traceback(tmp_path, run_cli, monkeypatch):
    import mrsynth.cache

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "cache"))

    monkeypatch.setattr(mrsynth.cache, "prepare_all", full_disk)
    code, _, err = run_cli("prepare", write_dataset(tmp_path / "data", 1, "hcp", shape=(20, 24, 18)),
                           "--out", tmp_path / "cache")
    assert code == 2 and "No space left on device" in err and "Traceback" not in err


def test_defect_05_model_files_follow_the_umask(trained):
    run, _, _ = trained
    mode = stat.S_IMODE((run / "model" / "model.safetensors").stat().st_mode)
    umask = os.umask(0o022)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def test_defect_06_a_zero_voxel_size_refuses_that_subject_only(tmp_path):
    root = write_dataset(tmp_path / "data", 2, "hcp", shape=(20, 24, 18))
    t1_path = next(s for s in discover(root) if s.id == "001").t1
    image = nib.load(str(t1_path))
    header = image.header.copy()
    singular = image.affine.copy()
    singular[:, 2] = 0
    header.set_sform(singular, code=1)
    header.set_qform(None, code=0)
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj), None, header), str(t1_path))
    assert not np.linalg.det(nib.load(str(t1_path)).affine[:3, :3])
    report = prepare_all(discover(root), tmp_path / "cache", progress=False)
    assert [r.id for r in report.failed] == ["001"] and "singular" in report.failed[0].message
    assert [s.id for s in list_prepared(tmp_path / "cache")] == ["002"]


def test_defect_09_evaluate_scores_a_mask_thinner_than_the_ssim_window():
    from mrsynth.metrics import evaluate_volume

    rng = np.random.default_rng(0)
    ref = rng.uniform(1, 2, (30, 30, 4)).astype(np.float32)
    mask = np.zeros(ref.shape, bool)
    mask[10:20, 10:20, 1:3] = True  # 2 voxels thick, in a 4-voxel volume
    scores = evaluate_volume(ref * 1.01, ref, mask)
    assert 0.9 < scores["ssim_3d"] <= 1 and 0.9 < scores["ssim_2d"] <= 1
