"""Scores (mrsynth.evaluation.metrics): whole volumes inside the brain mask, and the paper's patch MSE."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mrsynth.data import PatchDataset, PatchGrid, list_prepared
from mrsynth.evaluation import evaluate_volume
from mrsynth.networks import InputSpec
from mrsynth.training import patch_errors, patch_losses


def test_perfect_prediction_scores_zero_error_and_ssim_one():
    rng = np.random.default_rng(0)
    ref = rng.uniform(1, 2, (30, 32, 28)).astype(np.float32)
    mask = np.zeros(ref.shape, bool)
    mask[5:25, 6:26, 4:24] = True
    scores = evaluate_volume(ref.copy(), ref, mask, seg=np.where(mask, 3, 0))
    assert scores["mse"] == 0 and scores["mse_fov"] == 0 and scores["mae"] == 0
    assert scores["ssim_3d"] == pytest.approx(1.0, abs=1e-6) and scores["ssim_2d"] == pytest.approx(1.0, abs=1e-6)
    assert scores["mse_grey_matter"] == 0
    worse = evaluate_volume(ref + rng.normal(0, 0.1, ref.shape).astype(np.float32), ref, mask)
    assert worse["mse"] > 0 and worse["ssim_3d"] < 0.99 and np.isfinite(worse["psnr"])


def test_brain_median_scale_ignores_a_global_gain():
    rng = np.random.default_rng(1)
    ref = rng.uniform(1, 2, (20, 22, 18)).astype(np.float32)
    pred = ref + rng.normal(0, 0.05, ref.shape).astype(np.float32)
    mask = np.ones(ref.shape, bool)
    plain = evaluate_volume(pred, ref, mask)
    scaled = evaluate_volume(pred * 7.5, ref, mask)
    assert scaled["mse"] == pytest.approx(plain["mse"], rel=1e-5)
    assert evaluate_volume(pred * 7.5, ref, mask, scale="raw")["mse"] > 10 * plain["mse"]


class _Constant(torch.nn.Module):
    def __init__(self, value: float):
        super().__init__()
        self.value = value

    def forward(self, x):
        return torch.full_like(x[:, :1], self.value)


def test_patch_losses_are_the_mean_squared_error_over_all_and_brain_pixels(cache):
    subject = list_prepared(cache)[0]
    dataset = PatchDataset([subject], InputSpec(tissue_masks=True), PatchGrid(16, 8))
    items = list(range(len(dataset)))
    _, target = dataset[items]
    brain = torch.from_numpy(dataset.brain_windows(items))[:, None]
    losses = patch_losses(_Constant(0.5), dataset, 64, "cpu")
    assert losses["patches"] == len(dataset)
    assert losses["mse"] == pytest.approx(((target - 0.5) ** 2).mean().item(), rel=1e-5)
    assert losses["mse_brain"] == pytest.approx(((target - 0.5) ** 2)[brain].mean().item(), rel=1e-5)
    assert patch_losses(_Constant(0.5), dataset, 64, "cpu", limit=10)["patches"] == 10


def test_patch_errors_keep_each_patch_and_its_subject(cache):
    subjects = list_prepared(cache)[:2]
    dataset = PatchDataset(subjects, InputSpec(), PatchGrid(16, 8))
    errors = patch_errors(_Constant(0.5), dataset, 7, "cpu", limit=30, seed=3)
    assert len(errors["item"]) == 30 and sorted(set(errors["subject"].tolist())) == [0, 1]
    _, target = dataset[errors["item"].tolist()]
    per_patch = ((target - 0.5) ** 2).sum(dim=(1, 2, 3)).double().numpy()
    np.testing.assert_allclose(errors["sse"], per_patch, rtol=1e-5)
    assert (errors["pixels"] == 16 * 16).all() and (errors["brain_pixels"] <= errors["pixels"]).all()
    assert (errors["subject"] == dataset.locate_many(errors["item"])[0]).all()
