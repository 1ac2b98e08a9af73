"""The simulator: determinism, variation, anatomy classes, validity, grid, and realism vs HCP."""

from __future__ import annotations

import filecmp
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from mrsynth import labels
from mrsynth.data import list_prepared, prepare_all
from mrsynth.io import HCP_NAMES, discover, load_subject
from mrsynth.simulate import Anatomy, contrast_ratios, default_anatomy, simulate_dataset, simulate_subject

#: Median intensity ratios of the HCP MNI152 T1w/T2w templates with Avgwmparc (issue #3);
#: test_reference_ratios_match_the_hcp_templates re-measures them where the data exists.
HCP_RATIOS = {"t1w_wm": 1.26, "t1w_csf": 0.49, "t2w_wm": 0.71, "t2w_csf": 1.85, "t2w_subcortical": 0.79}

#: Plausible adult volumes (cm^3) of each class (brain mask and tissue classes); FreeSurfer
#: labels only a few voxels as "vessel" (0.05 cm^3 in SynthSeg map 01), hence its low floor.
PLAUSIBLE_CM3 = {
    "brain": (1000, 2300),
    "grey_matter": (350, 1000),
    "white_matter": (300, 800),
    "csf": (10, 500),
    "subcortical": (30, 200),
    "vessel": (0.01, 30),
    "cerebellum": (80, 250),
    "unknown": (500, 20000),
}


def _read(folder: Path):
    return [
        np.asarray(nib.load(str(folder / "T1w" / f"{HCP_NAMES[k]}.nii.gz")).dataobj)
        for k in ("t1", "t2", "seg", "mask")
    ]


@pytest.fixture(scope="module")
def default_subjects(tmp_path_factory):
    return simulate_dataset(tmp_path_factory.mktemp("sim"), 2, seed=0, progress=False)


def _check_realism(folder: Path):
    t1, t2, seg, mask = _read(folder)
    r = contrast_ratios(t1, t2, seg, mask)
    assert abs(r["t1w_white_matter_over_gm"] / HCP_RATIOS["t1w_wm"] - 1) <= 0.20, r
    assert abs(r["t2w_white_matter_over_gm"] / HCP_RATIOS["t2w_wm"] - 1) <= 0.20, r
    assert r["t1w_csf_over_gm"] <= HCP_RATIOS["t1w_csf"], r  # CSF darker than GM in T1w ...
    assert r["t2w_csf_over_gm"] >= HCP_RATIOS["t2w_csf"], r  # ... and brighter in T2w
    return r


def _check_classes(folder: Path):
    _, _, seg, mask = _read(folder)
    bits, unknown = labels.tissue_bits(seg, mask > 0)
    assert unknown == []  # every written code is a documented FreeSurfer code in the table
    voxel_cm3 = np.prod(nib.load(str(folder / "T1w" / "wmparc.nii.gz")).header.get_zooms()[:3]) / 1000
    volumes = {k: v * voxel_cm3 for k, v in labels.class_voxel_counts(bits).items()}
    for name, (low, high) in PLAUSIBLE_CM3.items():
        assert low <= volumes[name] <= high, (name, volumes[name])


@pytest.mark.slow
def test_default_subjects_have_every_class_with_plausible_volumes(default_subjects):
    for folder in default_subjects:
        _check_classes(folder)


@pytest.mark.slow
def test_default_subjects_look_like_hcp(default_subjects):
    for folder in default_subjects:
        _check_realism(folder)


@pytest.mark.slow
def test_same_seed_gives_identical_files_and_seeds_differ(default_subjects, tmp_path):
    again = simulate_dataset(tmp_path, 1, seed=0, progress=False)[0]
    for name in HCP_NAMES.values():
        assert filecmp.cmp(
            again / "T1w" / f"{name}.nii.gz", default_subjects[0] / "T1w" / f"{name}.nii.gz", shallow=False
        ), name
    first, second = _read(default_subjects[0]), _read(default_subjects[1])
    assert not np.array_equal(first[2], second[2])  # anatomy deformed differently
    assert np.mean(first[2] != second[2]) > 0.02
    assert (default_subjects[0] / "simulation.json").read_text() != (
        default_subjects[1] / "simulation.json"
    ).read_text()


@pytest.mark.slow
def test_simulated_subjects_pass_prepare_validation(default_subjects, tmp_path):
    subjects = discover(default_subjects[0].parent)
    assert [s.id for s in subjects] == ["sim001", "sim002"]
    load_subject(subjects[0], need_t2=True)
    report = prepare_all(subjects, tmp_path / "cache", progress=False)
    assert not report.failed
    prepared = list_prepared(tmp_path / "cache")
    assert all(s.meta["unknown_codes"] == [] for s in prepared)


def _small_anatomy(voxel_crop=40) -> Anatomy:
    full = default_anatomy()
    centre = np.array(full.codes.shape) // 2
    box = tuple(slice(c - voxel_crop, c + voxel_crop) for c in centre)
    affine = full.affine.copy()
    affine[:3, 3] += full.affine[:3, :3] @ (centre - voxel_crop)
    return Anatomy(
        "crop",
        full.codes[box],
        full.tissue[box],
        affine,
        full.mask[box],
        full.fractions[(slice(None),) + box],
        full.gm_tissue[box],
        full.wm_tissue[box],
    )


def test_voxel_size_07_gives_the_requested_grid(tmp_path):
    from mrsynth.simulate import write_hcp_subject

    subject = simulate_subject(_small_anatomy(), seed=5, voxel_size=0.7)
    assert subject.t1.shape == (114, 114, 114)  # 80 mm / 0.7 mm
    folder = write_hcp_subject(subject, tmp_path, "s07")
    for name in HCP_NAMES.values():
        image = nib.load(str(folder / "T1w" / f"{name}.nii.gz"))
        np.testing.assert_allclose(image.header.get_zooms()[:3], (0.7, 0.7, 0.7), rtol=1e-6)
        np.testing.assert_allclose(np.abs(np.diag(image.affine)[:3]), 0.7, rtol=1e-6)


@pytest.mark.slow
def test_label_maps_give_realistic_subjects(tmp_path):
    from conftest import require_shared

    maps = require_shared("synthseg-label-maps")
    folder = tmp_path / "maps"
    folder.mkdir()
    for name in ("training_seg_01.nii.gz", "training_seg_02.nii.gz"):
        (folder / name).symlink_to(maps / name)
    for subject in simulate_dataset(tmp_path / "out", 1, labels=folder, seed=10, progress=False):
        _check_classes(subject)
        _check_realism(subject)


def test_reference_ratios_match_the_hcp_templates():
    from conftest import require_shared

    data = require_shared("hcp-mni152")
    load = lambda name: np.squeeze(np.asarray(nib.load(str(data / name)).dataobj))
    r = contrast_ratios(
        load("MNI152_T1_1mm_brain.nii.gz"),
        load("MNI152_T2_1mm_brain.nii.gz"),
        load("Avgwmparc.nii.gz"),
        load("MNI152_T1_1mm_brain_mask.nii.gz") > 0,
    )
    assert r["t1w_white_matter_over_gm"] == pytest.approx(HCP_RATIOS["t1w_wm"], abs=0.01)
    assert r["t2w_white_matter_over_gm"] == pytest.approx(HCP_RATIOS["t2w_wm"], abs=0.01)
    assert r["t2w_subcortical_over_gm"] == pytest.approx(HCP_RATIOS["t2w_subcortical"], abs=0.01)


def test_simulate_cli_errors(tmp_path, run_cli):
    code, _, err = run_cli("simulate", tmp_path / "o", "--subjects", "1", "--labels", tmp_path / "missing")
    assert code == 2 and "missing" in err
    bad = tmp_path / "bad.nii.gz"
    nib.save(nib.Nifti1Image(np.full((8, 8, 8), 2.5, np.float32), np.eye(4)), str(bad))
    code, _, err = run_cli("simulate", tmp_path / "o", "--subjects", "1", "--labels", bad, "--quiet")
    assert code == 2 and "non-integer" in err and str(bad) in err


def test_texture_sensitivities_match_the_closed_forms():
    from mrsynth.simulate import tissues as T
    from mrsynth.simulate.signal import MPRAGE, SpinEcho
    from mrsynth.simulate.subject import _sensitivities

    echo = SpinEcho(te=140.0)
    everything = [T.TISSUES[name] for name in T.NAMES]
    signal = echo.signal(everything)
    silent = [t for t, s in zip(everything, signal) if s < 1e-9]  # background, air, bone (T2 0.4 ms): no signal
    assert silent and np.all(_sensitivities(echo, silent) == 0)
    tissues = [t for t, s in zip(everything, signal) if s >= 1e-9]
    d_t1, d_t2, d_pd = _sensitivities(echo, tissues)
    np.testing.assert_allclose(d_pd, 1.0, atol=1e-5)  # signal proportional to PD
    np.testing.assert_allclose(d_t2, [140.0 / t.t2 for t in tissues], rtol=1e-4)  # exp(-TE/T2)
    expected_t1 = [-(echo.tr / t.t1) * np.exp(-echo.tr / t.t1) / (1 - np.exp(-echo.tr / t.t1)) for t in tissues]
    np.testing.assert_allclose(d_t1, expected_t1, rtol=1e-4, atol=1e-6)
    mprage = [t for t in everything if t.pd > 0]
    np.testing.assert_allclose(_sensitivities(MPRAGE(), mprage)[2], 1.0, atol=1e-5)


def test_each_subject_has_its_own_protocol_within_the_ranges():
    from mrsynth.simulate import Variation
    from mrsynth.simulate.subject import _protocol

    variation = Variation()
    drawn = [_protocol(np.random.default_rng([seed, 1]), variation) for seed in range(20)]
    tis = [t1w.ti for t1w, _ in drawn]
    tes = [t2w.te for _, t2w in drawn]
    assert len(set(tis)) == 20 and min(tis) >= variation.ti_range_ms[0] and max(tis) <= variation.ti_range_ms[1]
    assert min(tes) >= variation.te_range_ms[0] and max(tes) <= variation.te_range_ms[1]


def test_a_label_maps_brain_mask_follows_hcp_and_leaves_the_csf_beyond_it_to_the_head(tmp_path):
    from mrsynth.simulate import label_map_anatomy, tissues

    grid = np.indices((48, 48, 48)).reshape(3, -1).T
    distance = np.linalg.norm(grid - 23.5, axis=1).reshape((48,) * 3)
    codes = np.select([distance <= 4, distance <= 14, distance <= 19, distance <= 22], [4, 3, 24, 515], 0)
    path = tmp_path / "map.nii.gz"
    nib.save(nib.Nifti1Image(codes.astype(np.float32), np.eye(4)), str(path))
    anatomy = label_map_anatomy(path)
    centre = np.array(anatomy.codes.shape) // 2
    depth = np.linalg.norm(
        np.indices(anatomy.codes.shape).reshape(3, -1).T - (np.array(anatomy.codes.shape) - 1) / 2, axis=1
    ).reshape(anatomy.codes.shape)
    assert anatomy.mask[tuple(centre)]  # the ventricle
    assert anatomy.mask[(depth <= 14.5)].all() and not anatomy.mask[depth >= 16.5].any()  # cortex + about 1 mm
    beyond = (depth > 16.5) & (depth <= 18.5)
    assert (anatomy.codes[beyond] == 258).all()  # the CSF left out: head tissue in wmparc ...
    assert (anatomy.tissue[beyond] == tissues.INDEX["csf"]).all()  # ... still simulated as CSF
