"""Whole-volume prediction (mrsynth.predict): files in, NIfTI out with the input's grid and header."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import torch

from mrsynth.cache import list_prepared


def _sources(cache, subject="003") -> dict:
    return json.loads((cache / subject / "subject.json").read_text())["sources"]


def test_predict_keeps_affine_shape_and_header(trained, tmp_path, run_cli):
    run, _, cache = trained
    source = _sources(cache)
    out = tmp_path / "pred.nii.gz"
    code, _, err = run_cli("predict", "--model", run / "model", "--t1", source["t1"]["path"], "--seg",
                           source["seg"]["path"], "--mask", source["mask"]["path"], "--out", out, "--quiet")
    assert code == 0, err
    t1, pred = nib.load(source["t1"]["path"]), nib.load(out)
    assert pred.shape == t1.shape and np.array_equal(pred.affine, t1.affine)
    assert pred.get_data_dtype() == np.float32
    for field in ("pixdim", "qform_code", "sform_code", "xyzt_units", "dim"):
        assert np.array_equal(pred.header[field], t1.header[field]), field
    # the prepared-subject path gives the same volume
    code, _, _ = run_cli("predict", "--model", run / "model", "--subject", cache / "003", "--out", tmp_path / "p2.nii.gz", "--quiet")
    assert code == 0
    np.testing.assert_allclose(nib.load(tmp_path / "p2.nii.gz").get_fdata(), pred.get_fdata(), rtol=1e-4, atol=1e-3)
    assert not list(tmp_path.glob(".*tmp*"))


def test_predict_input_errors(trained, tmp_path, run_cli):
    run, _, cache = trained
    source = _sources(cache)
    code, _, err = run_cli("predict", "--model", run / "model", "--t1", source["t1"]["path"], "--out", tmp_path / "x.nii.gz")
    assert code == 2 and "uses tissue masks" in err and source["t1"]["path"] in err
    other = tmp_path / "other_mask.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((10, 10, 10), np.uint8), np.eye(4)), str(other))
    code, _, err = run_cli("predict", "--model", run / "model", "--t1", source["t1"]["path"], "--seg",
                           source["seg"]["path"], "--mask", other, "--out", tmp_path / "x.nii.gz")
    assert code == 2 and "grid differs" in err and str(other) in err
    assert not (tmp_path / "x.nii.gz").exists()


def test_optimized_prediction_equals_the_plain_path(cache):
    from mrsynth.modelfile import ModelInfo
    from mrsynth.networks import FCN, recalibrate_batchnorm
    from mrsynth.predict import predict_slices

    torch.manual_seed(0)
    model = FCN(5, 9)
    recalibrate_batchnorm(model, [torch.randn(4, 9, 20, 20) for _ in range(2)])
    subject = list_prepared(cache)[0]
    info = ModelInfo(5, 9, 32, {"method": "robust", "t2_reference_scale": 2.0}, 16, 8, "axial")
    transform = info.norm().transform("t1", subject.stats)
    args = (model, info, subject.array("t1"), subject.array("tissue"), transform)
    fast, plain = predict_slices(*args, optimized=True), predict_slices(*args, optimized=False)
    np.testing.assert_allclose(fast, plain, rtol=1e-4, atol=1e-4)
