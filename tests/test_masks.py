"""Automatic masks from a bare T1w (mrsynth.masks.sources): registration on a real head, plumbing, refusals."""

from __future__ import annotations

import json
import logging
import sys

import nibabel as nib
import numpy as np
import pytest
from conftest import tiny_config, write_dataset
from nibabel.processing import resample_from_to

from mrsynth import labels, masks
from mrsynth.data import list_prepared, masks_source, prepare_all
from mrsynth.errors import InputError
from mrsynth.io import discover
from mrsynth.masks import atlas


def _head_in_another_pose(tmp_path):
    """The shipped 2 mm head template on a 2.5 mm grid in L-I-A voxel order, rotated 8 degrees, shifted;
    and its 1 mm brain mask resampled onto that grid (the expected result)."""
    head = nib.load(str(atlas.atlas_file("MNI152_T1_2mm.nii.gz")))
    angle = np.deg2rad(8)
    rotation = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    lia = np.array([[-1, 0, 0], [0, 0, 1], [0, -1, 0]]) * 2.5
    affine = np.eye(4)
    affine[:3, :3] = rotation @ lia
    shape = (80, 80, 96)
    affine[:3, 3] = np.array([5.0, -10.0, 12.0]) - affine[:3, :3] @ (np.array(shape) / 2)
    target = nib.Nifti1Image(np.zeros(shape, np.float32), affine)
    t1 = resample_from_to(head, target, order=1).get_fdata().astype(np.float32)
    mask = (
        resample_from_to(
            nib.load(str(atlas.atlas_file("MNI152_T1_1mm_brain_mask.nii.gz"))), target, order=1
        ).get_fdata()
        > 0.5
    )
    path = tmp_path / "head.nii.gz"
    nib.save(nib.Nifti1Image(t1, affine), str(path))
    return path, t1, affine, mask


def test_ants_image_has_the_nifti_geometry(tmp_path):
    ants = pytest.importorskip("ants")
    c, s = np.cos(0.3), np.sin(0.3)
    affine = np.eye(4)
    affine[:3, :3] = np.array([[0, 0, 1], [-c, -s, 0], [s, -c, 0]]) @ np.diag([0.9, 1.1, 1.2])  # oblique, P-I-R
    affine[:3, 3] = [-40, 60, 30]
    volume = np.random.default_rng(0).random((6, 7, 8)).astype(np.float32)
    nib.save(nib.Nifti1Image(volume, affine), str(tmp_path / "v.nii.gz"))
    read, ours = ants.image_read(str(tmp_path / "v.nii.gz")), atlas.to_ants(volume, affine)
    np.testing.assert_allclose(ours.origin, read.origin, atol=1e-4)
    np.testing.assert_allclose(ours.spacing, read.spacing, atol=1e-4)
    np.testing.assert_allclose(ours.direction, read.direction, atol=1e-4)
    np.testing.assert_array_equal(ours.numpy(), read.numpy())


@pytest.mark.slow
def test_masks_of_a_rotated_reoriented_coarser_head_land_on_its_grid(tmp_path, run_cli):
    pytest.importorskip("ants")
    path, t1, affine, expected = _head_in_another_pose(tmp_path)
    code, out, _ = run_cli("masks", path, "--out", tmp_path / "masks", "--method", "ants-atlas")
    assert code == 0, out
    brain = nib.load(str(tmp_path / "masks" / "brainmask.nii.gz"))
    assert brain.shape == t1.shape and np.allclose(brain.affine, affine)
    assert labels.dice(np.asarray(brain.dataobj) > 0, expected) > 0.9
    seg = np.asarray(nib.load(str(tmp_path / "masks" / "wmparc.nii.gz")).dataobj)
    classes = np.asarray(nib.load(str(tmp_path / "masks" / "tissue_classes.nii.gz")).dataobj)
    counts = labels.class_voxel_counts(labels.tissue_bits(seg, np.asarray(brain.dataobj) > 0)[0])
    for name in ("grey_matter", "white_matter", "csf", "subcortical", "cerebellum"):
        assert counts[name] > 100, (name, counts)
    inside = np.asarray(brain.dataobj) > 0
    assert (classes[~inside] == 0).all() and set(np.unique(classes[inside])) <= set(range(1, len(labels.CLASSES)))
    # white matter brighter than grey matter in the T1w, as the labels claim
    bits = labels.tissue_bits(seg, np.asarray(brain.dataobj) > 0)[0]
    assert np.median(t1[labels.has_class(bits, "white_matter")]) > np.median(t1[labels.has_class(bits, "grey_matter")])
    record = json.loads((tmp_path / "masks" / "masks.json").read_text())
    assert record["masks"]["method"] == atlas.METHOD and record["masks"]["input"] == "whole-head"
    assert record["warnings"] == [] and (tmp_path / "masks" / "masks_qc.png").stat().st_size > 10_000


@pytest.mark.slow
@pytest.mark.long  # two more registrations (30 s): the long tier
def test_a_badly_fitting_head_registration_is_refined_brain_to_brain_and_kept_only_if_better(tmp_path, monkeypatch):
    pytest.importorskip("ants")
    _, t1, affine, expected = _head_in_another_pose(tmp_path)
    monkeypatch.setattr(atlas, "MIN_REGISTRATION_FIT", 1.01)  # the head fits well (0.65 stops the retries), yet
    fits = []  # below 1.01: the refinement runs
    fit_of = atlas.registration_fit
    monkeypatch.setattr(atlas, "registration_fit", lambda *a: fits.append(fit_of(*a)) or fits[-1])
    result = masks.compute_masks(t1, affine, source="head", method="ants-atlas")
    first, refined = fits[0], fits[-1]
    assert len(fits) == 3 and result.provenance["registration_attempts"] == 1
    assert result.provenance["refined_on_brain"] == (refined > first)
    assert result.provenance["registration_fit"] == round(max(first, refined), 3)
    assert labels.dice(result.brain, expected) > 0.9 and result.brain.shape == t1.shape
    assert any("fits this T1w poorly" in note for note in result.warnings)


# the atlas registration (40 s) runs in the long tier: the warning's rule is shared, the learned method is quick
METHODS = [pytest.param(m, marks=pytest.mark.long) if m == atlas.METHOD else m for m in masks.MASK_METHODS]


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_a_t2w_looking_input_gets_a_warning(tmp_path, caplog, method):
    if method == atlas.METHOD:
        pytest.importorskip("ants")
    path, t1, affine, _ = _head_in_another_pose(tmp_path)
    inverted = np.where(t1 > 0.05 * t1.max(), t1.max() * 1.1 - t1, 0).astype(np.float32)  # WM dark, CSF bright
    with caplog.at_level(logging.WARNING, logger="mrsynth"):
        result = masks.compute_masks(inverted, affine, source="inverted.nii.gz", method=method)
    said = [r.message for r in caplog.records if "T2w rather than a T1w" in r.message]
    assert len(said) == 1 and result.warnings and "inverted.nii.gz" in result.warnings[0]


@pytest.mark.parametrize("case", ["2d", "4d", "constant", "empty", "nan", "tiny"])
def test_inputs_no_registration_can_use_are_refused_with_exit_2_and_nothing_written(tmp_path, run_cli, case):
    volume = np.random.default_rng(0).random((20, 20, 20)).astype(np.float32)
    if case == "2d":
        volume = volume[:, :, :1]
    elif case == "4d":
        volume = np.stack([volume, volume], axis=-1)
    elif case == "constant":
        volume[:] = 3.0
    elif case == "nan":
        volume[3, 3, 3] = np.nan
    elif case == "empty":
        volume[:] = 0.0
    elif case == "tiny":
        volume = volume[:4]
    path = tmp_path / f"{case}.nii.gz"
    nib.save(nib.Nifti1Image(volume, np.eye(4)), str(path))
    for method in masks.MASK_METHODS:
        code, _, err = run_cli("masks", path, "--out", tmp_path / "out", "--method", method)
        assert code == 2 and str(path) in err, (method, err)
    assert not (tmp_path / "out").exists()


def test_missing_extra_is_named(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ants", None)  # import ants -> ImportError
    volume = np.random.default_rng(0).random((20, 20, 20)).astype(np.float32)
    with pytest.raises(InputError, match=r"mrsynth\[masks\]"):
        masks.compute_masks(volume, np.eye(4), method="ants-atlas")


@pytest.fixture
def fake_registration(monkeypatch):
    """compute_masks replaced by the fixture's own masks read back from its files (no registration)."""
    calls = []

    def fake(t1, affine, source="T1w", method=None):
        folder = __import__("pathlib").Path(source).parent
        seg = np.asarray(nib.load(str(folder / "wmparc.nii.gz")).dataobj).astype(np.int32)
        brain = np.asarray(nib.load(str(folder / "brainmask_fs.nii.gz")).dataobj) > 0
        calls.append(source)
        return masks.AutoMasks(brain, seg, atlas.provenance() | {"input": "test", "method": method})

    import mrsynth.data.cache
    import mrsynth.inference.predict

    monkeypatch.setattr(mrsynth.data.cache, "compute_masks", fake)
    monkeypatch.setattr(mrsynth.inference.predict, "compute_masks", fake)
    return calls


def test_prepare_auto_records_where_masks_came_from_and_a_run_refuses_to_mix(tmp_path, fake_registration, run_cli):
    from mrsynth.training import train

    root = write_dataset(tmp_path / "data", 3, "hcp", shape=(40, 48, 36))
    prepare_all(discover(root), tmp_path / "cache", progress=False)
    assert {masks_source(s.meta) for s in list_prepared(tmp_path / "cache")} == {"files"}
    code, out, _ = run_cli("prepare", root, "--out", tmp_path / "cache", "--masks", "auto")
    assert code == 0 and "prepared: 3" in out and len(fake_registration) == 3  # the masks setting is part of up-to-date
    subjects = list_prepared(tmp_path / "cache")
    assert all(s.meta["masks"]["method"] == masks.DEFAULT_METHOD for s in subjects)
    code, out, _ = run_cli("prepare", root, "--out", tmp_path / "cache", "--masks", "auto")
    assert "up-to-date: 3" in out and len(fake_registration) == 3
    # one subject back to file masks: a run over all three refuses to mix
    prepare_all([s for s in discover(root) if s.id == "002"], tmp_path / "cache", progress=False)
    with pytest.raises(InputError, match=r"mix masks from files \(002\) with masks automatic by learned \(001, 003\)"):
        train(tiny_config(tmp_path / "cache", "optim.epochs=1"), tmp_path / "run", progress=False)


def test_predict_auto_masks_from_a_bare_t1w_and_says_when_they_differ_from_training(
    tmp_path, trained, fake_registration, run_cli
):
    run, _, _ = trained
    root = write_dataset(tmp_path / "data", 1, "hcp", shape=(40, 48, 36))
    t1 = next(iter(discover(root))).t1
    code, _, err = run_cli(
        "predict", "--model", run / "model", "--t1", t1, "--masks", "auto", "--out", tmp_path / "pred.nii.gz"
    )
    assert code == 0 and fake_registration == [t1]
    assert "masks from learned, but the model was trained on masks from files" in err
    with_files = tmp_path / "files.nii.gz"
    run_cli(
        "predict",
        "--model",
        run / "model",
        "--t1",
        t1,
        "--seg",
        t1.parent / "wmparc.nii.gz",
        "--mask",
        t1.parent / "brainmask_fs.nii.gz",
        "--out",
        with_files,
    )
    np.testing.assert_allclose(
        nib.load(str(tmp_path / "pred.nii.gz")).get_fdata(), nib.load(str(with_files)).get_fdata()
    )
    code, _, err = run_cli(
        "predict",
        "--model",
        run / "model",
        "--t1",
        t1,
        "--masks",
        "auto",
        "--mask",
        t1.parent / "brainmask_fs.nii.gz",
        "--out",
        tmp_path / "both.nii.gz",
    )
    assert code == 2 and "not both" in err and not (tmp_path / "both.nii.gz").exists()


def test_a_badly_fitting_registration_is_tried_again_and_the_best_kept():
    from mrsynth.masks.atlas import best_registration

    calls = []

    def register(fits):
        def run(seed, kind):
            calls.append((seed, kind))
            return fits[len(calls) - 1], {"seed": seed}

        return run

    fit, registration, attempts, kind = best_registration(register([0.4, 0.8, 0.9]), 7, "t1", good_enough=0.65)
    assert (fit, registration, attempts, kind) == (0.8, {"seed": 8}, 2, "whole-head")  # stops at the first good fit
    assert calls == [(7, "whole-head"), (8, "whole-head")]
    calls.clear()
    fit, registration, attempts, kind = best_registration(register([0.3, 0.5, 0.2]), 0, "t1", good_enough=0.65)
    assert (fit, registration, attempts, kind) == (0.5, {"seed": 1}, 3, "whole-head")  # none good: the best of three
    # the guessed input kind first, then the other one, then whichever fitted better
    calls.clear()
    fit, registration, attempts, kind = best_registration(
        register([0.1, 0.5, 0.6]), 0, "t1", ("skull-stripped", "whole-head"), good_enough=0.65
    )
    assert calls == [(0, "skull-stripped"), (1, "whole-head"), (2, "whole-head")] and (fit, kind) == (0.6, "whole-head")
    calls.clear()
    best_registration(register([0.5, 0.1, 0.2]), 0, "t1", ("skull-stripped", "whole-head"), good_enough=0.65)
    assert calls == [(0, "skull-stripped"), (1, "whole-head"), (2, "skull-stripped")]


def test_a_tightly_cropped_head_is_not_taken_for_a_skull_stripped_brain():
    from mrsynth.masks import looks_skull_stripped

    affine = np.diag([1.4, 1.4, 1.4, 1.0])
    rng = np.random.default_rng(0)
    brain = np.zeros((100, 100, 100), bool)
    brain[20:80, 15:85, 20:80] = True  # 250,000 voxels of 2.744 ul: 690 ml
    stripped = np.where(brain, 1.0 + 0.1 * rng.random(brain.shape), 0.0)
    assert looks_skull_stripped(stripped, affine)
    cropped_head = stripped + 0.02 * rng.random(brain.shape)  # the same little signal, but a noisy background
    assert not looks_skull_stripped(cropped_head, affine)
    head = np.where(np.pad(np.ones((90, 90, 90), bool), 5), 1.0, 0.0)  # 2 litres at 1.4 mm, yet 3 at 1.6 mm
    assert looks_skull_stripped(head, affine) and not looks_skull_stripped(head, np.diag([1.6, 1.6, 1.6, 1.0]))


def test_registration_fit_is_the_correlation_inside_the_brain():
    from mrsynth.masks.atlas import registration_fit

    rng = np.random.default_rng(0)
    fixed, brain = rng.normal(size=(8, 8, 8)), np.ones((8, 8, 8), bool)
    assert registration_fit(2 * fixed + 1, fixed, brain) == pytest.approx(1.0)
    assert abs(registration_fit(rng.normal(size=(8, 8, 8)), fixed, brain)) < 0.2
    assert registration_fit(fixed, fixed, np.zeros((8, 8, 8), bool)) == 0.0
