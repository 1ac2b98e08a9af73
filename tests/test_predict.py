"""Whole-volume prediction (mrsynth.inference.predict): files in, NIfTI out with the input's grid and header."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from mrsynth import labels
from mrsynth.data import list_prepared
from mrsynth.networks import InputSpec, ModelInfo, Normalization, Transform, predict_slices


def _sources(cache, subject="003") -> dict:
    return json.loads((cache / subject / "subject.json").read_text())["sources"]


def test_predict_keeps_affine_shape_and_header(trained, tmp_path, run_cli):
    run, _, cache = trained
    source = _sources(cache)
    out = tmp_path / "pred.nii.gz"
    code, _, err = run_cli(
        "predict",
        "--model",
        run / "model",
        "--t1",
        source["t1"]["path"],
        "--seg",
        source["seg"]["path"],
        "--mask",
        source["mask"]["path"],
        "--out",
        out,
        "--quiet",
    )
    assert code == 0, err
    t1, pred = nib.load(source["t1"]["path"]), nib.load(out)
    assert pred.shape == t1.shape and np.array_equal(pred.affine, t1.affine)
    assert pred.get_data_dtype() == np.float32
    for field in ("pixdim", "qform_code", "sform_code", "xyzt_units", "dim"):
        assert np.array_equal(pred.header[field], t1.header[field]), field
    # the prepared-subject path gives the same volume
    code, _, _ = run_cli(
        "predict", "--model", run / "model", "--subject", cache / "003", "--out", tmp_path / "p2.nii.gz", "--quiet"
    )
    assert code == 0
    np.testing.assert_allclose(nib.load(tmp_path / "p2.nii.gz").get_fdata(), pred.get_fdata(), rtol=1e-4, atol=1e-3)
    assert not list(tmp_path.glob(".*tmp*"))


def test_predict_input_errors(trained, tmp_path, run_cli):
    run, _, cache = trained
    source = _sources(cache)
    code, _, err = run_cli(
        "predict", "--model", run / "model", "--t1", source["t1"]["path"], "--out", tmp_path / "x.nii.gz"
    )
    assert code == 2 and "uses tissue masks" in err and source["t1"]["path"] in err
    other = tmp_path / "other_mask.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((10, 10, 10), np.uint8), np.eye(4)), str(other))
    code, _, err = run_cli(
        "predict",
        "--model",
        run / "model",
        "--t1",
        source["t1"]["path"],
        "--seg",
        source["seg"]["path"],
        "--mask",
        other,
        "--out",
        tmp_path / "x.nii.gz",
    )
    assert code == 2 and "grid differs" in err and str(other) in err
    assert not (tmp_path / "x.nii.gz").exists()


def test_optimized_prediction_equals_the_plain_path(cache):
    from mrsynth.networks import FCN, recalibrate_batchnorm

    torch.manual_seed(0)
    model = FCN(5, 9)
    recalibrate_batchnorm(model, [torch.randn(4, 9, 20, 20) for _ in range(2)])
    subject = list_prepared(cache)[0]
    spec = InputSpec(tissue_masks=True, normalization=Normalization("robust", t2_reference_scale=2.0))
    info = ModelInfo("fcn", spec, params={"layers": 5})
    transform = info.norm().transform("t1", subject.stats)
    args = (model, info, subject.array("t1"), subject.array("tissue"), transform)
    fast, plain = predict_slices(*args, optimized=True), predict_slices(*args, optimized=False)
    np.testing.assert_allclose(fast, plain, rtol=1e-4, atol=1e-4)


def _randomize(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Untrained weights with non-zero biases and BatchNorm statistics: a background response that is not flat,
    and above 0 (predictions are clipped at 0, which would hide differences below it)."""
    generator = torch.Generator().manual_seed(seed)
    convolutions = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2, generator=generator)
            module.running_var.uniform_(0.5, 1.5, generator=generator)
            module.bias.data.uniform_(-0.2, 0.2, generator=generator)
        elif isinstance(module, torch.nn.Conv2d):
            module.bias.data.uniform_(-0.1, 0.1, generator=generator)
    convolutions[-1].bias.data += 5.0
    return model.eval()


def _head(shape=(30, 52, 44), seed=0):
    """A slice-major volume: an off-centre ellipsoid of signal and tissue classes in a background of zeros."""
    rng = np.random.default_rng(seed)
    s, h, w = np.ogrid[: shape[0], : shape[1], : shape[2]]
    inside = ((s - 17) / 9) ** 2 + ((h - 20) / 11) ** 2 + ((w - 26) / 9) ** 2 < 1
    t1 = np.where(inside, rng.uniform(200, 900, shape), 0).astype(np.float32)
    seg = np.where(inside, rng.choice([2, 3, 4, 10], shape), 0).astype(np.int32)
    bits, _ = labels.tissue_bits(seg, inside)
    return t1, bits, inside


@pytest.mark.parametrize(
    "kind, context, strip, masks",
    [
        ("fcn", 0, False, True),
        ("fcn", 1, True, False),
        ("unet", 0, False, True),
        ("intensity-map", 0, False, False),
        ("fcn+lookup", 0, False, False),
        ("unet+lookup", 1, False, False),
    ],
)
def test_skipping_background_gives_the_full_computation(kind, context, strip, masks, monkeypatch):
    from mrsynth.networks import IntensityMap, build_network, slice_offsets
    from mrsynth.networks import runner as predict

    t1, bits, brain = _head()
    in_channels = 1 + 2 * context + (8 if masks else 0)
    table = IntensityMap(torch.linspace(-1, 3, 64), torch.linspace(2, -1, 64) ** 2)
    kind, _, lookup = kind.partition("+")
    if kind == "intensity-map":
        model = table.eval()
    else:
        params = {"layers": 5, "width": 8} if kind == "fcn" else {"features": (4, 4, 8, 8, 8, 4)}
        model = _randomize(build_network(kind, in_channels, params, lookup=table if lookup else None), 1)
    norm = Normalization("robust", t2_reference_scale=300.0)
    spec = InputSpec(offsets=slice_offsets(context), tissue_masks=masks, normalization=norm, strip=strip)
    info = ModelInfo(kind, spec)
    assert info.in_channels == in_channels
    computed = []
    original = predict._Source.batch

    def counting(self, start, stop, window):
        inputs = original(self, start, stop, window)
        computed.append(inputs.shape[0] * inputs.shape[2] * inputs.shape[3])
        return inputs

    monkeypatch.setattr(predict._Source, "batch", counting)
    windowed = []
    original_window = predict.WindowedStack.__call__
    monkeypatch.setattr(
        predict.WindowedStack, "__call__", lambda self, *a: (windowed.append(1), original_window(self, *a))[1]
    )
    transform = Transform(scale=1 / 500)
    args = (model, info, t1, bits if masks else None, transform)
    full = predict_slices(*args, batch_size=4, brain=brain, skip_background=False)
    pixels_full = sum(computed)
    computed.clear()
    skipped = predict_slices(*args, batch_size=4, brain=brain)
    np.testing.assert_allclose(skipped, full, rtol=0, atol=1e-5 * np.abs(full).max())
    assert np.ptp(full[0]) > 0 or kind == "intensity-map"  # the background response is not flat: edges matter
    assert sum(computed) < 0.8 * pixels_full  # and the skipping did skip
    assert bool(windowed) == (kind == "fcn" and not lookup)  # a plain stack is computed on windows, padded exactly


def test_batches_cover_the_slices_once_within_the_slice_and_pixel_limits():
    from mrsynth.networks.runner import _batches

    widths = [0, 0, 10, 40, 40, 40, 20, 0, 10, 10, 10, 10]  # per slice: a 10-row crop this wide, 0 = background

    def crop(start, stop):
        width = max(widths[start:stop])
        return (None, None) if width == 0 else ((slice(0, 10), slice(0, width)),) * 2

    batches = list(_batches(len(widths), 3, 900, crop))
    assert [b[:2] for b in batches] == [(0, 3), (3, 5), (5, 7), (7, 10), (10, 12)]
    for start, stop, window, _ in batches:
        pixels = 0 if window is None else 10 * (window[1].stop - window[1].start) * (stop - start)
        assert pixels <= 900 or stop - start == 1
    assert [b[:2] for b in _batches(len(widths), 4, None, crop)] == [(0, 4), (4, 8), (8, 12)]
