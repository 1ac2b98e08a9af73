"""Histogram standardization (mrsynth.data.normalization, method ``histogram``) on synthetic statistics."""

from __future__ import annotations

import numpy as np
import pytest

from mrsynth.networks import intensity_stats
from mrsynth.networks.normalization import LANDMARK_PERCENTILES, Normalization, Transform


def _stats(t1: np.ndarray, t2: np.ndarray) -> dict:
    brain = np.ones(t1.shape, bool)
    return {"t1": intensity_stats(t1, brain), "t2": intensity_stats(t2, brain)}


def test_piecewise_map_goes_through_its_knots_and_continues_linearly():
    transform = Transform(scale=2.0, shift=1.0, knots_in=(0.0, 1.0, 3.0), knots_out=(0.0, 2.0, 3.0))
    values = np.array([-1.0, 0.0, 0.5, 1.0, 2.0, 3.0, 5.0])
    expected = np.array([-2.0, 0.0, 1.0, 2.0, 2.5, 3.0, 4.0]) * 2 + 1
    np.testing.assert_allclose(transform(values), expected)
    np.testing.assert_allclose(Transform(scale=0.5, shift=-1)(values), values * 0.5 - 1)


def test_histogram_standardization_gives_subjects_of_different_contrast_the_training_landmarks():
    rng = np.random.default_rng(0)
    grey, white = rng.normal(1.0, 0.15, 5000), rng.normal(1.5, 0.15, 5000)
    t2 = rng.uniform(0.5, 2.0, 10_000)
    trained = Normalization.fit("histogram", [_stats(np.concatenate([grey, white]), t2)])
    # another site: white matter much brighter against grey, everything scaled by 300
    other = np.concatenate([grey, 2.5 * white - 1.2]) * 300
    standardized = trained.transform("t1", _stats(other, t2))(other)
    reference = np.concatenate([grey, white])
    reference = reference / np.percentile(reference, 99)
    for q in LANDMARK_PERCENTILES:
        assert np.percentile(standardized, q) == pytest.approx(np.percentile(reference, q), rel=0.01)
    assert trained.transform("t1", _stats(other, t2))(np.zeros(3)).tolist() == [0, 0, 0]  # background stays 0
    # the target is scaled as by ``percentile`` and maps back by the training T2w's 99th percentile
    assert np.percentile(trained.transform("t2", _stats(other, t2))(t2), 99) == pytest.approx(1.0)
    assert trained.to_intensity()[0] == pytest.approx(np.percentile(t2, 99))


def test_histogram_refuses_statistics_without_deciles():
    rng = np.random.default_rng(1)
    stats = _stats(rng.uniform(1, 2, 100), rng.uniform(1, 2, 100))
    del stats["t1"]["brain_deciles"]
    with pytest.raises(ValueError, match="prepare it again"):
        Normalization.fit("histogram", [stats])
