"""Scoring files and prepared subjects (mrsynth.evaluation.evaluate): one scoring path whatever the reference's form."""

from __future__ import annotations

import numpy as np
import pytest

from mrsynth.data import list_prepared, prepare_all
from mrsynth.evaluation import Reference, references, score
from mrsynth.io import discover
from mrsynth.io.fixtures import write_dataset


def test_a_prepared_subject_and_its_files_give_the_same_scores(tmp_path):
    root = write_dataset(tmp_path / "data", 1, "hcp", shape=(40, 48, 36))
    prepare_all(discover(root), tmp_path / "cache", axis="coronal", progress=False)  # stored along another axis
    prepared = Reference.from_prepared(list_prepared(tmp_path / "cache")[0])
    from_files = references(root)["001"]
    np.testing.assert_array_equal(prepared.t2, from_files.t2)
    np.testing.assert_array_equal(prepared.mask, from_files.mask)
    prediction = prepared.t2 * np.random.default_rng(0).uniform(0.9, 1.1, prepared.t2.shape).astype(np.float32)
    a, b = score(prediction, prepared), score(prediction, from_files)
    for key in ("mse", "psnr", "ssim_3d", "ssim_2d", "mse_grey_matter", "mse_csf"):
        assert a[key] == pytest.approx(b[key], rel=1e-6), key
