"""The prepared-subject cache: contents, re-use, rebuild, parallel preparation, inspect."""

from __future__ import annotations

import json
import os

import nibabel as nib
import numpy as np

from mrsynth.data import list_prepared, prepare_all
from mrsynth.io import discover
from mrsynth.io.fixtures import write_dataset


def test_cache_holds_slice_major_arrays_and_metadata(hcp_root, tmp_path):
    prepare_all(discover(hcp_root), tmp_path / "cache", progress=False)
    subject = list_prepared(tmp_path / "cache")[0]
    image = nib.load(hcp_root / "001" / "T1w" / "T1w_acpc_dc.nii.gz")
    t1 = subject.array("t1")
    assert isinstance(t1, np.memmap)
    assert subject.meta["axis"] == 2  # RAS: axial is the third axis
    assert t1.shape == (image.shape[2], image.shape[0], image.shape[1])
    np.testing.assert_array_equal(subject.to_native(np.asarray(t1)), image.get_fdata().astype(np.float32))
    assert subject.meta["affine"] == image.affine.tolist()
    assert set(subject.meta["sources"]) == {"t1", "t2", "seg", "mask"}
    assert subject.stats["t2"]["brain_median"] > 0
    assert subject.array("tissue").dtype == np.uint8


def test_rerun_skips_up_to_date_and_rebuilds_changed_or_damaged(hcp_root, tmp_path):
    cache = tmp_path / "cache"
    subjects = discover(hcp_root)
    assert len(prepare_all(subjects, cache, progress=False).by_status("prepared")) == 3
    assert len(prepare_all(subjects, cache, progress=False).by_status("up-to-date")) == 3

    # a changed source file (new content, new mtime) makes that subject stale
    t1_path = hcp_root / "002" / "T1w" / "T1w_acpc_dc.nii.gz"
    image = nib.load(t1_path)
    nib.save(nib.Nifti1Image(image.get_fdata().astype(np.float32) * 2, image.affine), t1_path)
    os.utime(t1_path, ns=(1, 1))
    # a damaged cache entry is rebuilt
    (cache / "003" / "tissue.npy").write_bytes(b"garbage")
    report = prepare_all(subjects, cache, progress=False)
    assert [r.id for r in report.by_status("prepared")] == ["002", "003"]
    assert [r.id for r in report.by_status("up-to-date")] == ["001"]
    rebuilt = {s.id: s for s in list_prepared(cache)}["002"]
    np.testing.assert_allclose(np.asarray(rebuilt.array("t1")).max(), 2 * image.get_fdata().max(), rtol=1e-6)
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no temporary folders left


def test_parallel_preparation_matches_serial(hcp_root, tmp_path):
    subjects = discover(hcp_root)
    prepare_all(subjects, tmp_path / "serial", progress=False)
    report = prepare_all(subjects, tmp_path / "parallel", jobs=2, progress=False)
    assert len(report.by_status("prepared")) == 3
    for a, b in zip(list_prepared(tmp_path / "serial"), list_prepared(tmp_path / "parallel")):
        np.testing.assert_array_equal(a.array("tissue"), b.array("tissue"))
        assert a.stats == b.stats


def test_other_slice_axis(hcp_root, tmp_path, run_cli):
    code, _, _ = run_cli("prepare", hcp_root, "--out", tmp_path / "c", "--axis", "coronal", "--quiet")
    assert code == 0
    subject = list_prepared(tmp_path / "c")[0]
    assert subject.meta["axis"] == 1 and subject.stored_shape[0] == subject.meta["shape"][1]
    code, _, err = run_cli("prepare", hcp_root, "--out", tmp_path / "d", "--axis", "oblique", "--quiet")
    assert code == 2 and "oblique" in err


def test_inspect_json_reports_classes_and_patches(tmp_path, run_cli):
    root = write_dataset(tmp_path / "data", 2, "bids", shape=(40, 48, 36))
    run_cli("prepare", root, "--out", tmp_path / "cache", "--quiet")
    code, out, _ = run_cli("inspect", tmp_path / "cache", "--json", "--patch-size", "16", "--stride", "8")
    assert code == 0
    report = json.loads(out)
    first = report["subjects"][0]
    assert first["id"] == "sub-001" and first["shape"] == [40, 48, 36]
    assert first["voxel_size"] == [1.5, 1.5, 1.5]
    # 36 axial slices of 40 x 48: 4 x 5 patches of 16 px at stride 8
    assert first["patches"] == 36 * 4 * 5
    assert all(v > 0 for v in first["voxels_per_class"].values())
    code, out, _ = run_cli("inspect", tmp_path / "cache")
    assert code == 0 and "total patches" in out
    code, _, err = run_cli("inspect", tmp_path / "nowhere")
    assert code == 2 and "nowhere" in err
