"""Discovery in every layout, and every validation error (message names the file; exit code 2)."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from mrsynth.errors import InputError
from mrsynth.io import discover, load_subject
from mrsynth.io.fixtures import make_subject, save_nifti, write_dataset, write_manifest, write_subject


@pytest.mark.parametrize("layout", ["hcp", "hcp-flat", "bids", "csv"])
def test_every_layout_is_discovered_automatically(tmp_path, layout):
    target = write_dataset(tmp_path / layout, 2, layout)
    subjects = discover(target)
    assert len(subjects) == 2
    for subject in subjects:
        assert all(p is not None and p.exists() for p in (subject.t1, subject.t2, subject.seg, subject.mask))
        volumes = load_subject(subject, need_t2=True)
        assert volumes.t1.shape == volumes.seg.shape == volumes.t2.shape


def test_single_hcp_subject_folder_is_a_root(tmp_path):
    write_dataset(tmp_path, 1, "hcp")
    (subject,) = discover(tmp_path / "001", "hcp")
    assert subject.id == "001"


def test_bids_sessions_and_segmentation_next_to_t1(tmp_path):
    fixture = make_subject(seed=3)
    anat = tmp_path / "sub-07" / "ses-2" / "anat"
    save_nifti(fixture.t1, fixture.affine, anat / "sub-07_ses-2_T1w.nii.gz")
    save_nifti(fixture.seg, fixture.affine, anat / "sub-07_ses-2_desc-aseg_dseg.nii.gz")
    save_nifti(fixture.mask, fixture.affine, anat / "sub-07_ses-2_desc-brain_mask.nii.gz")
    (subject,) = discover(tmp_path)
    assert subject.id == "sub-07_ses-2"
    assert subject.t2 is None  # prediction-only subject
    assert subject.seg.name.endswith("aseg_dseg.nii.gz")
    load_subject(subject)  # valid without T2w


def test_bids_ambiguous_segmentation_is_an_error_for_that_subject_only(tmp_path):
    """Defect 12 of issue 14: one ambiguous subject used to refuse the whole dataset."""
    from mrsynth.data import list_prepared, prepare_all

    fixture = make_subject()
    for label in ("01", "02"):
        anat = tmp_path / f"sub-{label}" / "anat"
        save_nifti(fixture.t1, fixture.affine, anat / f"sub-{label}_T1w.nii.gz")
        save_nifti(fixture.seg, fixture.affine, anat / f"sub-{label}_desc-a_dseg.nii.gz")
        save_nifti(fixture.mask, fixture.affine, anat / f"sub-{label}_desc-brain_mask.nii.gz")
    save_nifti(fixture.seg, fixture.affine, tmp_path / "sub-01" / "anat" / "sub-01_desc-b_dseg.nii.gz")
    ambiguous, fine = discover(tmp_path)
    with pytest.raises(InputError, match="ambiguous segmentation"):
        load_subject(ambiguous)
    report = prepare_all([ambiguous, fine], tmp_path / "cache", progress=False)
    assert [r.id for r in report.failed] == ["sub-01"] and "ambiguous segmentation" in report.failed[0].message
    assert [s.id for s in list_prepared(tmp_path / "cache")] == ["sub-02"]


def test_csv_t2_may_be_empty_and_paths_are_relative(tmp_path):
    files = write_subject(tmp_path, "a", make_subject(), "csv", with_t2=False)
    manifest = write_manifest(tmp_path / "list.csv", {"a": files})
    (subject,) = discover(manifest)
    assert subject.t2 is None and subject.t1 == tmp_path / "files" / "a_t1.nii.gz"


def test_csv_missing_columns(tmp_path, run_cli):
    manifest = tmp_path / "m.csv"
    manifest.write_text("subject,t1\nx,a.nii.gz\n")
    code, _, err = run_cli("prepare", manifest, "--out", tmp_path / "c")
    assert code == 2 and str(manifest) in err and "t2, seg, mask" in err


def test_unrecognised_root(tmp_path, run_cli):
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli("prepare", tmp_path / "empty", "--out", tmp_path / "c")
    assert code == 2 and "no subjects recognised" in err


# ----------------------------------------------------------------- validation errors


def _break_t1(files, tmp_path):
    files["t1"].write_bytes(gzip.compress(b"this is not a nifti file"))


def _truncate_t2(files, tmp_path):
    data = files["t2"].read_bytes()
    files["t2"].write_bytes(data[: len(data) // 2])


def _make_4d(files, tmp_path):
    image = nib.load(files["t1"])
    data = np.stack([image.get_fdata()] * 2, axis=-1)
    nib.save(nib.Nifti1Image(data.astype(np.float32), image.affine), files["t1"])


def _nan(files, tmp_path):
    image = nib.load(files["t2"])
    data = image.get_fdata().astype(np.float32)
    data[5, 5, 5] = np.nan
    nib.save(nib.Nifti1Image(data, image.affine), files["t2"])


def _inf(files, tmp_path):
    image = nib.load(files["t1"])
    data = image.get_fdata().astype(np.float32)
    data[1, 2, 3] = np.inf
    nib.save(nib.Nifti1Image(data, image.affine), files["t1"])


def _shape(files, tmp_path):
    image = nib.load(files["mask"])
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj)[:-1], image.affine), files["mask"])


def _affine(files, tmp_path):
    image = nib.load(files["seg"])
    affine = image.affine.copy()
    affine[0, 3] += 0.01  # 10 micrometres: over the 1e-3 mm tolerance
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj), affine), files["seg"])


def _non_integer(files, tmp_path):
    image = nib.load(files["seg"])
    data = np.asarray(image.dataobj).astype(np.float32) + 0.5
    nib.save(nib.Nifti1Image(data, image.affine), files["seg"])


def _empty_mask(files, tmp_path):
    image = nib.load(files["mask"])
    nib.save(nib.Nifti1Image(np.zeros(image.shape, np.uint8), image.affine), files["mask"])


def _missing(files, tmp_path):
    files["seg"].unlink()


CASES = {
    "corrupt": (_break_t1, "t1", "unreadable or corrupt"),
    "truncated": (_truncate_t2, "t2", "unreadable or corrupt"),
    "not-3d": (_make_4d, "t1", "expected a 3D volume"),
    "nan": (_nan, "t2", "NaN or Inf"),
    "inf": (_inf, "t1", "NaN or Inf"),
    "shape": (_shape, "mask", "shape"),
    "affine": (_affine, "seg", "affines differ"),
    "non-integer": (_non_integer, "seg", "non-integer"),
    "empty-mask": (_empty_mask, "mask", "brain mask is empty"),
    "missing-file": (_missing, None, "required segmentation is missing"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_validation_error_names_file_exits_2_and_writes_nothing(tmp_path, run_cli, case):
    damage, role, message = CASES[case]
    files = write_subject(tmp_path / "data", "bad", make_subject(), "hcp")
    damage(files, tmp_path)
    cache = tmp_path / "cache"
    code, _, err = run_cli("prepare", tmp_path / "data", "--out", cache, "--quiet")
    assert code == 2
    assert message in err
    named = files[role] if role else files["t1"].parent
    assert str(named) in err
    assert not cache.exists() or list(cache.iterdir()) == []


def test_trailing_singleton_axis_and_sub_tolerance_affine_are_accepted(tmp_path):
    files = write_subject(tmp_path, "ok", make_subject(), "hcp")
    image = nib.load(files["t1"])
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj)[..., np.newaxis], image.affine), files["t1"])
    image = nib.load(files["mask"])
    affine = image.affine.copy()
    affine[1, 3] += 5e-4
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj), affine), files["mask"])
    (subject,) = discover(tmp_path)
    assert load_subject(subject).t1.ndim == 3


def test_bad_subjects_are_reported_and_good_ones_prepared(tmp_path, run_cli):
    root = write_dataset(tmp_path / "data", 3, "hcp")
    _nan({"t2": root / "002" / "T1w" / "T2w_acpc_dc.nii.gz"}, tmp_path)
    (root / "003" / "T1w" / "brainmask_fs.nii.gz").unlink()
    code, out, err = run_cli("prepare", root, "--out", tmp_path / "cache", "--quiet")
    assert code == 0
    assert "prepared: 1" in out and "failed: 2" in err
    assert "002" in err and "003" in err
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["001"]


def test_strict_makes_a_bad_subject_fatal(tmp_path, run_cli):
    root = write_dataset(tmp_path / "data", 2, "hcp")
    _nan({"t2": root / "002" / "T1w" / "T2w_acpc_dc.nii.gz"}, tmp_path)
    code, _, err = run_cli("prepare", root, "--out", tmp_path / "cache", "--strict", "--quiet")
    assert code == 2 and "NaN or Inf" in err
    assert not (tmp_path / "cache" / "002").exists()
