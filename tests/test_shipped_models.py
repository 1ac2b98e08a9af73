"""The shipped models predict what they predicted before the one model layer: the pretrained model's T2w (with a
mask, and with the mask the segmenter computes) and the segmenter's probabilities and classes on a generated head,
against the outputs of mrsynth at commit c1c6f05 (``data/shipped-models/expected.json``, made from that commit's
``mrsynth predict`` and ``mrsynth masks`` on this head).  Both are within float rounding of then: the pretrained
model's prediction came out bit-identical on this machine; the segmenter's probabilities within 2.1e-6 (its
normalization multiplies by the reciprocal of the 99th percentile where it divided, and its first convolution's
input channels were reordered to the order every model reads), its classes identical.  The pretrained model is held
with its footprint averaging off (issue 41 turned it on: c1c6f05 sampled each voxel's centre); the averaging itself
is tested on its own."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from mrsynth.io.fixtures import make_subject, save_nifti
from mrsynth.masks import segmenter
from mrsynth.networks import SEGMENTER, load_model
from mrsynth.networks.inputs import onto_work_grid, resample_inputs

EXPECTED = json.loads((Path(__file__).parent / "data" / "shipped-models" / "expected.json").read_text())


@pytest.fixture(scope="module")
def head(tmp_path_factory) -> dict:
    """A generated head at 1.5 mm, rotated 0.3 rad in-plane (neither the pretrained model's grid nor the
    segmenter's): T1w and brain mask files."""
    folder = tmp_path_factory.mktemp("head")
    subject = make_subject(shape=(48, 56, 44), voxel_size=1.5, seed=3)
    c, s = np.cos(0.3), np.sin(0.3)
    affine = subject.affine.copy()
    affine[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ affine[:3, :3]
    return {
        n: save_nifti(getattr(subject, n).astype(np.float32), affine, folder / f"{n}.nii.gz") for n in ("t1", "mask")
    }


def _volume(path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj, dtype=np.float64)


def test_the_pretrained_model_predicts_what_it_did(head, tmp_path):
    from dataclasses import replace

    from mrsynth.inference import predict_files
    from mrsynth.networks import PRETRAINED

    model, info = load_model(PRETRAINED)
    then = replace(info, spec=replace(info.spec, footprint=False))  # each voxel's centre, as at c1c6f05
    predict_files(model, then, head["t1"], tmp_path / "t2w.nii.gz", mask=head["mask"])
    predicted, expected = _volume(tmp_path / "t2w.nii.gz"), EXPECTED["pretrained_with_mask"]
    values = [predicted[tuple(v)] for v in expected["voxels"]]
    np.testing.assert_allclose(values, expected["values"], rtol=1e-5, atol=1e-3)
    assert predicted.sum() == pytest.approx(expected["sum"], rel=1e-6)
    assert int((predicted > 0).sum()) == expected["nonzero"]
    predict_files(model, then, head["t1"], tmp_path / "unmasked.nii.gz")  # the mask computed by the segmenter
    unmasked, expected = _volume(tmp_path / "unmasked.nii.gz"), EXPECTED["pretrained_without_mask"]
    assert unmasked.sum() == pytest.approx(expected["sum"], rel=1e-5)
    assert abs(int((unmasked > 0).sum()) - expected["nonzero"]) <= 10  # a near-tie of the segmenter may differ


def test_the_segmenter_finds_what_it_did(head, tmp_path, run_cli):
    image = nib.load(str(head["t1"]))
    t1 = image.get_fdata().astype(np.float32)
    model, info = load_model(SEGMENTER)
    work = resample_inputs(onto_work_grid(info.spec, image.affine, t1.shape), image.affine, t1)["t1"]
    probabilities, expected = segmenter.probabilities(model, info, work), EXPECTED["segmenter"]
    found = probabilities[(slice(None), *np.asarray(expected["work_voxels"]).T)].T
    np.testing.assert_allclose(found, expected["probabilities"], atol=1e-5)
    result = segmenter.segment(t1, image.affine, (model, info))
    assert result.confidence == pytest.approx(expected["confidence"], abs=1e-5)
    assert result.inverted_confidence == pytest.approx(expected["inverted_confidence"], abs=1e-5)
    counts = np.bincount(result.classes.ravel(), minlength=len(segmenter.OUTPUTS))
    assert (
        np.abs(counts - expected["class_voxels"]).sum() <= 10
        and abs(int(result.brain.sum()) - expected["brain_voxels"]) <= 10
    )


def test_a_voxel_larger_than_the_work_grids_gets_the_average_over_its_footprint():
    """The physics of a thick slice: a 3 mm voxel acquires the mean over its 3 mm, not the value at its centre; a
    voxel no larger than the work grid's is the trilinear value at its centre."""
    from mrsynth.networks.grids import average_onto, resample_onto

    work = np.zeros((8, 8, 30), np.float32)
    work[:, :, 14] = 30.0  # one bright 1 mm slice
    fine, thick = np.eye(4), np.diag([1.0, 1.0, 3.0, 1.0])
    thick[2, 3] = 1.0  # thick slice k spans work slices 3k..3k+2, centred on 3k + 1
    averaged = average_onto(work, fine, (8, 8, 10), thick, 1.0)
    assert averaged[4, 4, 4] == pytest.approx(10.0) and averaged[4, 4, 3] == pytest.approx(0.0)
    assert resample_onto(work, fine, (8, 8, 10), thick)[4, 4, 4] == pytest.approx(0.0)  # its centre misses it
    np.testing.assert_array_equal(
        average_onto(work, fine, work.shape, fine, 1.0), resample_onto(work, fine, work.shape, fine)
    )
