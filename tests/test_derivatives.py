"""Predictions as BIDS derivatives (mrsynth.inference.derivatives): names, sidecars, dataset description, pybids."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from mrsynth.errors import InputError
from mrsynth.inference import derivatives
from mrsynth.io.fixtures import make_subject, save_nifti, write_dataset, write_manifest, write_subject
from mrsynth.networks import file_sha256

SESSIONS = {"01": ["1", "2"], "02": ["1"]}


def _bids_dataset(root):
    """Two subjects, three sessions, masks in a FreeSurfer derivatives folder, one T1w with an acq entity."""
    (root / "dataset_description.json").parent.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "fixture", "BIDSVersion": "1.9.0"}))
    for n, (label, sessions) in enumerate(SESSIONS.items()):
        for session in sessions:
            fixture = make_subject((40, 48, 36), seed=n * 10 + int(session))
            prefix = f"sub-{label}_ses-{session}" + ("_acq-mprage" if label == "02" else "")
            anat = root / f"sub-{label}" / f"ses-{session}" / "anat"
            derived = root / "derivatives" / "freesurfer" / f"sub-{label}" / f"ses-{session}" / "anat"
            save_nifti(fixture.t1, fixture.affine, anat / f"{prefix}_T1w.nii.gz")
            save_nifti(fixture.seg, fixture.affine, derived / f"{prefix}_desc-wmparc_dseg.nii.gz")
            save_nifti(fixture.mask, fixture.affine, derived / f"{prefix}_desc-brain_mask.nii.gz")
    return root


def test_bids_names_keep_the_source_entities_and_make_labels_from_other_ids():
    assert derivatives.relative_path("sub-01_ses-2_acq-mprage").as_posix() == (
        "sub-01/ses-2/anat/sub-01_ses-2_acq-mprage_desc-mrsynth_T2w.nii.gz"
    )
    assert derivatives.relative_path("sub-01").as_posix() == "sub-01/anat/sub-01_desc-mrsynth_T2w.nii.gz"
    assert derivatives.bids_prefix("100307") == "sub-100307"
    assert derivatives.bids_prefix("subj_01.a") == "sub-subj01a"
    with pytest.raises(InputError, match="no letters or digits"):
        derivatives.bids_prefix("___")


def test_bids_input_gives_derivatives_that_pybids_finds_with_their_entities(trained, tmp_path, run_cli):
    bids = pytest.importorskip("bids", reason="pybids is in the test extras: pip install -e '.[test]'")
    run, _, _ = trained
    root, out = _bids_dataset(tmp_path / "bids"), tmp_path / "derivatives" / "mrsynth"
    code, stdout, err = run_cli("predict", "--model", run / "model", "--data", root, "--out-dir", out, "--quiet")
    assert code == 0, err
    assert "wrote 3 prediction(s)" in stdout

    layout = bids.BIDSLayout(root, derivatives=out, validate=False)
    found = layout.get(scope="mrsynth", desc="mrsynth", suffix="T2w", extension=".nii.gz")
    entities = sorted((f.entities["subject"], f.entities["session"]) for f in found)
    assert entities == [("01", "1"), ("01", "2"), ("02", "1")]
    acq = [f for f in found if f.entities["subject"] == "02"][0]
    assert acq.entities["acquisition"] == "mprage"

    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert description["GeneratedBy"][0]["Name"] == "mrsynth"
    assert description["DatasetLinks"]["raw"] == root.resolve().as_uri()

    sha = file_sha256(run / "model" / "model.safetensors")
    for image in found:
        metadata = layout.get_metadata(image.path)  # pybids reads the sidecar beside the image
        assert metadata["Sources"][0].startswith("bids:raw:sub-")
        assert any(source.startswith("bids:raw:derivatives/freesurfer/") for source in metadata["Sources"])
        record = metadata["mrsynth"]
        assert record["model"]["weights_sha256"] == sha
        assert record["version"] and record["masks"] == "files"
        assert record["normalization"]["method"] and record["normalization_t1"]["scale"] > 0
        source = layout.get(
            scope="raw",
            subject=image.entities["subject"],
            session=image.entities["session"],
            suffix="T1w",
            extension=".nii.gz",
        )[0]
        assert np.array_equal(nib.load(image.path).affine, nib.load(source.path).affine)

    # `evaluate` and a second run read and rewrite the same dataset
    code, _, err = run_cli("predict", "--model", run / "model", "--data", root, "--out-dir", out, "--quiet")
    assert code == 0, err
    assert not [p for p in out.rglob(".*") if p.is_file()]


def test_bids_flag_for_hcp_input_and_evaluate_reads_the_derivatives(trained, tmp_path, run_cli):
    run, _, _ = trained
    root = write_dataset(tmp_path / "hcp", 2, "hcp")
    out = tmp_path / "out"
    code, _, err = run_cli("predict", "--model", run / "model", "--data", root, "--out-dir", out, "--bids", "--quiet")
    assert code == 0, err
    images = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.nii.gz"))
    assert images == ["sub-001/anat/sub-001_desc-mrsynth_T2w.nii.gz", "sub-002/anat/sub-002_desc-mrsynth_T2w.nii.gz"]
    sidecar = json.loads((out / "sub-001/anat/sub-001_desc-mrsynth_T2w.json").read_text())
    assert sidecar["Sources"][0] == "bids:raw:001/T1w/T1w_acpc_dc.nii.gz"
    code, _, err = run_cli("evaluate", "--pred", out, "--ref", root, "--json", tmp_path / "scores.json")
    assert code == 0, err
    assert set(json.loads((tmp_path / "scores.json").read_text())["per_subject"]) == {"001", "002"}


def test_flat_output_stays_available_for_bids_input(trained, tmp_path, run_cli):
    run, _, _ = trained
    root = write_dataset(tmp_path / "bids", 1, "bids")
    code, _, err = run_cli(
        "predict", "--model", run / "model", "--data", root, "--out-dir", tmp_path / "out", "--flat", "--quiet"
    )
    assert code == 0, err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["sub-001.nii.gz"]


def test_refusals_come_before_any_prediction(trained, tmp_path, run_cli):
    run, _, _ = trained
    rows = {
        subject_id: write_subject(tmp_path / "csv", subject_id, make_subject(seed=i))
        for i, subject_id in enumerate(["a_1", "a-1"])
    }
    manifest = write_manifest(tmp_path / "csv" / "manifest.csv", rows)
    code, _, err = run_cli(
        "predict", "--model", run / "model", "--data", manifest, "--out-dir", tmp_path / "o1", "--bids"
    )
    assert code == 2 and "would share the BIDS name" in err and "sub-a1" in err
    assert not (tmp_path / "o1").exists()

    foreign = tmp_path / "o2"
    foreign.mkdir()
    (foreign / "dataset_description.json").write_text(json.dumps({"GeneratedBy": [{"Name": "fMRIPrep"}]}))
    root = write_dataset(tmp_path / "bids", 1, "bids")
    code, _, err = run_cli("predict", "--model", run / "model", "--data", root, "--out-dir", foreign)
    assert code == 2 and "fMRIPrep" in err and str(foreign / "dataset_description.json") in err
    assert sorted(p.name for p in foreign.iterdir()) == ["dataset_description.json"]

    code, _, err = run_cli(
        "predict", "--model", run / "model", "--t1", "x.nii.gz", "--out", tmp_path / "p.nii.gz", "--bids"
    )
    assert code == 2 and "--bids and --flat" in err
