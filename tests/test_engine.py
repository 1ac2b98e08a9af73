"""The pretraining engine (mrsynth.simulate.engine): deterministic subjects, every randomization within its range,
lesions labelled and T2-bright, and the canonical T2w target whatever the T1w."""

from __future__ import annotations

import numpy as np
import pytest

from mrsynth.io.fixtures import make_subject, save_nifti
from mrsynth.simulate import tissues as T
from mrsynth.simulate.anatomy import label_map_anatomy
from mrsynth.simulate.engine import CANONICAL_T2W, EngineSettings, draw_t1w_sequence, engine_subject
from mrsynth.simulate.pathology import LESIONS, RANGES, PathologyOdds, lesion_tissues
from mrsynth.simulate.sequences import SPGR, at_field
from mrsynth.simulate.signal import MPRAGE, SpinEcho

SMALL = EngineSettings(work_mm=2.0)  # a 2 mm work grid: seconds per subject


@pytest.fixture(scope="module")
def anatomy(tmp_path_factory):
    """A small head as a 1 mm label map (the fixtures' layout: cortex, white matter, ventricles, CSF, skull)."""
    subject = make_subject(shape=(64, 72, 60), voxel_size=1.0)
    path = save_nifti(subject.seg.astype(np.float32), subject.affine, tmp_path_factory.mktemp("map") / "map.nii.gz")
    return label_map_anatomy(path)


def test_a_subject_is_its_seed(anatomy):
    a, b, c = engine_subject(anatomy, 7, SMALL), engine_subject(anatomy, 7, SMALL), engine_subject(anatomy, 8, SMALL)
    for name in ("t1", "t2", "brain", "lesions"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.parameters == b.parameters
    assert a.t1.shape != c.t1.shape or not np.array_equal(a.t1, c.t1)


def test_input_and_target_lie_on_one_grid_with_a_mask_a_user_might_give(anatomy):
    subject = engine_subject(anatomy, 3, SMALL)
    shapes = {v.shape for v in (subject.t1, subject.t2, subject.brain, subject.normalizing, subject.lesions)}
    assert len(shapes) == 1 and subject.t1.dtype == subject.t2.dtype == np.float32
    assert np.allclose(np.diag(subject.affine)[:3], SMALL.work_mm)
    brain, mask = subject.brain, subject.normalizing  # grown or shrunk by at most mask_jitter_vox voxels
    assert abs(int(mask.sum()) - int(brain.sum())) < 0.5 * brain.sum() and (mask & brain).sum() > 0.5 * brain.sum()


def test_the_drawn_t1w_sequences_stay_in_their_ranges_and_are_t1_weighted():
    kinds = set()
    for seed in range(300):
        sequence, record = draw_t1w_sequence(np.random.default_rng(seed))
        kinds.add(record["kind"])
        if isinstance(sequence, MPRAGE):
            assert 700 <= sequence.ti <= 1200 and 6 <= sequence.flip_deg <= 12 and sequence.tr > sequence.ti
        elif isinstance(sequence, SPGR):
            assert 8 <= sequence.tr <= 40 and 2 <= sequence.te <= 6 and 12 <= sequence.flip_deg <= 40
        else:
            assert isinstance(sequence, SpinEcho) and 350 <= sequence.tr <= 800 and 8 <= sequence.te <= 25
        signal = sequence.signal([T.TISSUES[name] for name in ("wm", "gm", "csf")])
        assert signal[0] > signal[1] > signal[2], record  # white > grey > CSF: a T1w
    assert kinds == {"mprage", "spgr", "spin-echo"}


def test_degradations_stay_in_their_ranges(anatomy):
    for seed in range(12):
        record = engine_subject(anatomy, seed, SMALL).parameters["degradation"]
        assert SMALL.bias[0] <= record["bias"] <= SMALL.bias[1] and SMALL.snr[0] <= record["snr"] <= SMALL.snr[1]
        voxel = sorted(record["voxel_mm"])
        assert SMALL.voxel_mm[0] <= voxel[0] <= SMALL.voxel_mm[1] and voxel[-1] <= SMALL.thick_mm[1]
        assert 1.0 / np.exp(0.35) <= record.get("gamma", 1.0) <= np.exp(0.35)


def test_1_5_tesla_shortens_t1_and_keeps_csf():
    values = dict(T.TISSUES)
    low = at_field(values, 1.5)
    assert low["wm"].t1 < values["wm"].t1 and low["gm"].t1 < values["gm"].t1 and low["csf"] == values["csf"]
    with pytest.raises(ValueError, match="1.5 T and 3 T"):
        at_field(values, 7.0)


@pytest.mark.parametrize(
    "odds, labels", [(PathologyOdds(ms=1.0, tumour=0.0), {1}), (PathologyOdds(ms=0.0, tumour=1.0), {2, 3})]
)
def test_lesions_are_labelled_and_t2_bright(anatomy, odds, labels):
    from dataclasses import replace

    found = set()
    for seed in range(4):
        subject = engine_subject(anatomy, seed, replace(SMALL, pathology=odds))
        found |= set(np.unique(subject.lesions)) - {0}
        median = np.median(subject.t2[subject.brain])
        white = subject.brain & (subject.lesions == 0) & (subject.t2 < median)  # white matter: the darkest T2w
        for label in set(np.unique(subject.lesions)) - {0}:
            inside = subject.lesions == label
            assert np.median(subject.t2[inside]) > np.median(subject.t2[white]), LESIONS[label]
    assert labels <= found


def test_lesion_tissues_are_drawn_in_range_t1_dark_and_t2_bright_at_both_fields():
    white = T.TISSUES["wm"]
    for seed in range(50):
        drawn = lesion_tissues(np.random.default_rng(seed))
        for name, tissue in drawn.items():
            (t1_low, t2_low, pd_low), (t1_high, t2_high, pd_high) = RANGES[name]
            assert t1_low <= tissue.t1 <= t1_high and t2_low <= tissue.t2 <= t2_high and pd_low <= tissue.pd <= pd_high
        for tesla in (1.5, 3.0):
            values = at_field({"wm": white, **drawn}, tesla)
            lesions = [values[name] for name in drawn]
            t1w, t2w = MPRAGE().signal([values["wm"]] + lesions), CANONICAL_T2W.signal([white] + list(drawn.values()))
            assert (t1w[1:] < t1w[0]).all() and (t2w[1:] > t2w[0]).all()


@pytest.mark.parametrize("voxel", [(2.0, 1.0, 1.0), (1.0, 1.0, 4.0), (1.5, 1.5, 3.0), (0.7, 0.7, 5.0)])
def test_the_acquired_t1w_stays_on_its_target_grid(voxel):
    """Coarse voxels blur the T1w but never shift it against the T2w target (a box of even width did, by half
    a voxel)."""
    from mrsynth.simulate.engine import _acquired

    grid = np.indices((40, 40, 40)).astype(np.float32)
    blob = np.exp(-(((grid - np.array([19.0, 21.0, 20.0])[:, None, None, None]) / 4) ** 2).sum(0)).astype(np.float32)
    acquired = _acquired(blob, np.array(voxel), blob > 0.5, snr=1e6, rng=np.random.default_rng(0))
    centroid = lambda v: (grid * v).reshape(3, -1).sum(1) / v.sum()  # noqa: E731
    np.testing.assert_allclose(centroid(acquired), centroid(blob), atol=0.05)
