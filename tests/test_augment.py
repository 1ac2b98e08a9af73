"""Training-time augmentation (mrsynth.data.augment): what changes, what must not."""

from __future__ import annotations

import torch

from mrsynth.data.augment import active, augment_batch
from mrsynth.training.config import AugmentConfig


def _batch():
    torch.manual_seed(0)
    inputs = torch.rand(6, 11, 16, 20) + 0.5
    inputs[:, 3:] = torch.where(torch.rand(6, 8, 16, 20) > 0.5, 1.0, -1.0)  # 3 T1w channels (2.5D), 8 masks
    return inputs, torch.rand(6, 1, 16, 20)


def test_contrast_changes_touch_only_the_t1w_channels_and_keep_background_and_the_median_fixed_by_gamma():
    inputs, target = _batch()
    out, out_target = augment_batch(inputs, target, AugmentConfig(gamma=0.5, bias=0.3, noise=0.05), t1_channels=3)
    assert torch.equal(out[:, 3:], inputs[:, 3:]) and torch.equal(out_target, target)
    assert not torch.allclose(out[:, :3], inputs[:, :3])
    values = torch.tensor([[0.0, 1.0, 2.0]]).reshape(1, 1, 1, 3).repeat(4, 1, 1, 1)
    gamma_only, _ = augment_batch(values, torch.zeros(4, 1, 1, 3), AugmentConfig(gamma=0.5))
    assert torch.equal(gamma_only[..., :2], values[..., :2])  # 0 and 1 are fixed points of x ** g
    assert ((gamma_only[..., 2] > 2 / 1.5**1.01) & (gamma_only[..., 2] < 2**1.5 * 1.01)).all()


def test_flips_move_input_and_target_together():
    inputs, target = _batch()
    inputs[:, 0] = target[:, 0]  # the T1w channel equals the target before flipping
    out, out_target = augment_batch(inputs, target, AugmentConfig(flips=True), t1_channels=3)
    assert torch.equal(out[:, 0], out_target[:, 0])
    assert not torch.equal(out_target, target)  # 6 samples x 2 axes: some flipped


def test_rotation_and_zoom_move_input_and_target_together_and_keep_a_centred_disc():
    inputs, target = _batch()
    inputs[:, 0] = target[:, 0]  # the T1w channel equals the target before the pose change
    out, out_target = augment_batch(inputs, target, AugmentConfig(rotate=20, scale=0.1), t1_channels=3)
    assert out.shape == inputs.shape and out_target.shape == target.shape
    assert torch.allclose(out[:, 0], out_target[:, 0])  # input and target share one transform
    assert not torch.allclose(out_target, target)
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(20.0), indexing="ij")
    disc = (((yy - 7.5) ** 2 + (xx - 9.5) ** 2) <= 16).float().expand(6, 1, 16, 20).clone()  # radius 4, centred
    _, rotated = augment_batch(inputs, disc, AugmentConfig(rotate=30), 3)
    assert torch.allclose(rotated, disc, atol=0.5)  # a centred disc moves only at its pixelated edge
    assert torch.allclose(rotated.sum(dim=(1, 2, 3)), disc.sum(dim=(1, 2, 3)), rtol=0.05)  # area kept
    _, zoomed = augment_batch(inputs, disc, AugmentConfig(scale=0.3), 3)
    areas = zoomed.sum(dim=(1, 2, 3))
    assert areas.max() - areas.min() > 5  # zoom changes its area


def test_same_seed_same_augmentation_and_off_by_default():
    inputs, target = _batch()
    config = AugmentConfig(gamma=0.4, bias=0.2, noise=0.02, flips=True, rotate=10, scale=0.05)
    torch.manual_seed(5)
    a = augment_batch(inputs, target, config, 3)
    torch.manual_seed(5)
    b = augment_batch(inputs, target, config, 3)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not active(AugmentConfig()) and active(config)


def test_erosion_only_shrinks_the_stripped_region_and_needs_stripping(cache, tmp_path):
    import pytest

    from mrsynth.errors import InputError
    from mrsynth.training import load_config, train

    t1 = torch.zeros(40, 1, 24, 24)
    t1[:, :, 6:18, 6:18] = 1.0
    out, _ = augment_batch(t1, torch.zeros(40, 1, 24, 24), AugmentConfig(erode=2))
    inside = (out != 0).sum(dim=(1, 2, 3))
    assert torch.all((out != 0) <= (t1 != 0))  # never grows
    assert set(inside.tolist()) <= {144, 100, 64} and len(set(inside.tolist())) > 1  # 12x12 shrunk by 0, 1 or 2
    config = load_config(None, [f"data.cache={cache}", "data.train=001", "augment.erode=2"])
    with pytest.raises(InputError, match="needs data.strip"):
        train(config, tmp_path / "r", progress=False)


def test_mask_jitter_moves_only_the_mask_boundaries_and_by_at_most_its_length():
    inputs, target = _batch()
    inputs[:, 3:] = -1.0
    inputs[:, 3:, :, :10] = 1.0  # every mask: the left half of the patch
    out, out_target = augment_batch(inputs, target, AugmentConfig(mask_jitter=2.0), t1_channels=3)
    assert torch.equal(out[:, :3], inputs[:, :3]) and torch.equal(out_target, target)
    masks = out[:, 3:]
    assert set(masks.unique().tolist()) <= {-1.0, 1.0}  # still masks
    assert (masks[..., :7] == 1).all() and (masks[..., 13:] == -1).all()  # moved by at most 2 (+1 for rounding)
    assert not torch.equal(masks, inputs[:, 3:])  # some boundary moved
    assert torch.equal(augment_batch(inputs, target, AugmentConfig(gamma=0.1), 3)[0][:, 3:], inputs[:, 3:])


def test_intensity_augmentations_need_a_scaling_normalization_but_flips_and_mask_jitter_do_not(cache, tmp_path):
    import pytest

    from mrsynth.errors import InputError
    from mrsynth.training import Trainer, load_config

    paper = [f"data.cache={cache}", "data.train=001", "data.norm=paper"]
    for setting in ("augment.gamma=0.3", "augment.bias=0.2", "augment.noise=0.02", "augment.rotate=10"):
        with pytest.raises(InputError, match="scaling normalization"):
            Trainer(load_config(None, paper + [setting]), tmp_path / "r", progress=False)
    trainer = Trainer(
        load_config(None, paper + ["augment.flips=true", "augment.mask_jitter=2"]), tmp_path / "r", progress=False
    )
    assert trainer.config.augment.mask_jitter == 2 and active(trainer.config.augment)
