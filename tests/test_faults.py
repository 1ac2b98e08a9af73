"""Regression tests for the defects a hostile probe found (issue 14), each named after its defect."""

from __future__ import annotations

import json
import os
import stat

import nibabel as nib
import numpy as np
import pytest
from conftest import tiny_config, write_dataset

from mrsynth.data import list_prepared, prepare_all
from mrsynth.errors import InputError
from mrsynth.io import discover


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
    code, _, err = run_cli(
        "predict", "--model", model, "--subject", list_prepared(cache)[0].folder, "--out", tmp_path / "p.nii.gz"
    )
    assert code == 2 and "SHA-256" in err and "model.safetensors" in err
    assert not (tmp_path / "p.nii.gz").exists()


def test_defect_01_non_finite_weights_are_refused_even_without_a_checksum(trained, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    from mrsynth.networks import load_model

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
    from mrsynth.training import train

    root = write_dataset(tmp_path / "data", 3, "hcp", shape=(20, 24, 18))
    subject = next(s for s in discover(root) if s.id == "001")
    t1 = nib.load(str(subject.t1))
    brain = np.asarray(nib.load(str(subject.mask)).dataobj) > 0  # (a negative offset is shifted away: issue 40)
    nib.save(nib.Nifti1Image(np.where(brain, 0, np.asarray(t1.dataobj)), t1.affine), str(subject.t1))
    prepare_all(discover(root), tmp_path / "cache", progress=False)
    with pytest.raises(InputError, match="001.*brain median"):
        train(tiny_config(tmp_path / "cache", "optim.epochs=1"), tmp_path / "run", progress=False)


def test_defect_04_predict_refuses_an_unwritable_output_before_computing(trained, tmp_path, run_cli):
    run, _, cache = trained
    subject = list_prepared(cache)[0].folder
    (tmp_path / "p.nii.gz").mkdir()
    code, _, err = run_cli("predict", "--model", run / "model", "--subject", subject, "--out", tmp_path / "p.nii.gz")
    assert code == 2 and "is a folder" in err
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        code, _, err = run_cli("predict", "--model", run / "model", "--subject", subject, "--out", locked / "p.nii.gz")
        assert code == 2 and "not writable" in err


def test_defect_04_an_os_error_is_one_line_not_a_traceback(tmp_path, run_cli, monkeypatch):
    import mrsynth.data

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "cache"))

    monkeypatch.setattr(mrsynth.data, "prepare_all", full_disk)
    code, _, err = run_cli(
        "prepare", write_dataset(tmp_path / "data", 1, "hcp", shape=(20, 24, 18)), "--out", tmp_path / "cache"
    )
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
    from mrsynth.evaluation import evaluate_volume

    rng = np.random.default_rng(0)
    ref = rng.uniform(1, 2, (30, 30, 4)).astype(np.float32)
    mask = np.zeros(ref.shape, bool)
    mask[10:20, 10:20, 1:3] = True  # 2 voxels thick, in a 4-voxel volume
    scores = evaluate_volume(ref * 1.01, ref, mask)
    assert 0.9 < scores["ssim_3d"] <= 1 and 0.9 < scores["ssim_2d"] <= 1


def test_defect_07_leftovers_of_killed_writers_are_removed_by_the_next_run_and_live_ones_kept(tmp_path):
    import subprocess
    import sys

    from mrsynth.atomic import _temporary_name, remove_leftovers

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    names = [tmp_path / "001", tmp_path / "x.nii.gz", tmp_path / "checkpoint.pt"]
    leftovers = [
        p.with_name(_temporary_name(p, kind).name.replace(f".{os.getpid()}-", f".{dead_pid}-"))
        for p, kind in zip(names, ("tmp", "tmp", "old"))
    ]
    leftovers[0].mkdir()
    (leftovers[0] / "t1.npy").write_bytes(b"partial")
    for path in leftovers[1:]:
        path.write_bytes(b"partial")
    live = _temporary_name(tmp_path / "y.nii.gz", "tmp")  # this process is alive: its file is work in progress
    live.write_bytes(b"writing")
    (tmp_path / "keep.nii.gz").write_bytes(b"a real output")
    assert sorted(remove_leftovers(tmp_path)) == sorted(leftovers)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "keep.nii.gz"])


def test_defect_07_prepare_removes_a_killed_preparations_folder(tmp_path):
    from mrsynth.atomic import _temporary_name

    root = write_dataset(tmp_path / "data", 1, "hcp", shape=(20, 24, 18))
    (tmp_path / "cache").mkdir()
    orphan = (
        tmp_path
        / "cache"
        / _temporary_name(tmp_path / "cache" / "001", "tmp").name.replace(f".{os.getpid()}-", ".999999999-")
    )
    orphan.mkdir()
    prepare_all(discover(root), tmp_path / "cache", progress=False)
    assert not orphan.exists() and [s.id for s in list_prepared(tmp_path / "cache")] == ["001"]


def test_defect_08_a_truncated_array_is_caught_when_the_cache_is_opened(tmp_path, run_cli):
    root = write_dataset(tmp_path / "data", 1, "hcp", shape=(20, 24, 18))
    prepare_all(discover(root), tmp_path / "cache", progress=False)
    array = tmp_path / "cache" / "001" / "t1.npy"
    array.write_bytes(array.read_bytes()[:1000])
    code, _, err = run_cli("inspect", tmp_path / "cache")
    assert code == 2 and "t1.npy" in err and "prepare the subject again" in err
    assert prepare_all(discover(root), tmp_path / "cache", progress=False).by_status("prepared")  # rebuilt


@pytest.mark.parametrize("damage", ["model.json", "checkpoint", "split.json", "subject.json"])
def test_defect_10_malformed_run_and_cache_files_are_clean_errors(trained, tmp_path, run_cli, damage):
    import shutil

    run, _, cache = trained
    copy, cache_copy = tmp_path / "run", tmp_path / "cache"
    shutil.copytree(run, copy)
    shutil.copytree(cache, cache_copy)
    if damage == "model.json":
        (copy / "model" / "model.json").write_text('{"n_layers": "nine"}')
        command = [
            "predict",
            "--model",
            copy / "model",
            "--subject",
            cache_copy / "001",
            "--out",
            tmp_path / "p.nii.gz",
        ]
    elif damage == "subject.json":
        (cache_copy / "001" / "subject.json").write_text('{"id": "001"}')
        command = ["inspect", cache_copy]
    else:
        target = copy / ("checkpoint.pt" if damage == "checkpoint" else "split.json")
        target.write_bytes(b"\x80\x04garbage" if damage == "checkpoint" else b'{"kind": 3}')
        config = (copy / "config.toml").read_text().replace(str(cache), str(cache_copy))
        (copy / "config.toml").write_text(config)
        command = ["train", "--resume", copy, "--set", "optim.epochs=8"]
    code, _, err = run_cli(*command)
    assert code == 2 and "Traceback" not in err, err
    assert {"model.json": "model", "checkpoint": "checkpoint", "split.json": "split", "subject.json": "subject.json"}[
        damage
    ] in err


def test_defect_12_messages_name_the_right_thing(tmp_path, trained, run_cli):
    from mrsynth.evaluation import evaluate_volume

    (tmp_path / "empty.csv").write_text("")
    code, _, err = run_cli("prepare", tmp_path / "empty.csv", "--out", tmp_path / "cache")
    assert code == 2 and "manifest is empty" in err
    ref = np.zeros((10, 10, 10), np.float32)
    with pytest.raises(ValueError, match="reference's median"):
        evaluate_volume(np.ones_like(ref), ref, np.ones(ref.shape, bool))
    run, _, cache = trained
    code, _, err = run_cli("predict", "--model", run / "model", "--subject", cache / "001", "--out", tmp_path / "x.txt")
    assert code == 2 and "NIfTI" in err and not (tmp_path / "x.txt").exists()


def test_defect_11_concurrent_folder_replacements_always_leave_one_whole_folder(tmp_path):
    import threading

    from mrsynth.atomic import building_folder

    final = tmp_path / "subject"
    errors = []

    def writer(tag: int) -> None:
        try:
            for i in range(40):
                with building_folder(final) as folder:
                    for name in ("a", "b", "c"):
                        (folder / name).write_text(f"{tag}-{i}")
        except Exception as error:  # noqa: BLE001 - any failure is the defect
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    contents = {(final / name).read_text() for name in ("a", "b", "c")}
    assert len(contents) == 1  # one writer's whole folder, never a mix
    assert [p.name for p in tmp_path.iterdir()] == ["subject"]  # no leftovers


def test_fuzz_finding_a_complex_image_is_refused_not_cast_to_its_real_part(tmp_path):
    root = write_dataset(tmp_path / "data", 1, "hcp", shape=(20, 24, 18))
    t1_path = next(iter(discover(root))).t1
    t1 = nib.load(str(t1_path))
    nib.save(nib.Nifti1Image(np.asarray(t1.dataobj).astype(np.complex64) * (1 + 1j), t1.affine), str(t1_path))
    report = prepare_all(discover(root), tmp_path / "cache", progress=False)
    assert report.failed and "complex-valued" in report.failed[0].message and str(t1_path) in report.failed[0].message
