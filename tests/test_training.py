"""Training, resume, eval-mode quality, prediction files, evaluation and baselines, on tiny fixtures."""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from mrsynth import labels
from mrsynth.baselines import IntensityMap, TissueMean, fit_for_run
from mrsynth.cache import list_prepared
from mrsynth.normalization import Normalization
from mrsynth.config import load_config, to_toml
from mrsynth.errors import InputError
from mrsynth.metrics import evaluate_volume
from mrsynth.models import load_model
from mrsynth.train import build_data, mean_loss, train

TINY = ["data.patch_size=16", "data.stride=8", "data.channels=9", "model.layers=5", "optim.batch_size=16",
        "optim.lr=0.003", "optim.lr_step_epochs=4", "val_recalibration_batches=4", "bn_recalibration_batches=20",
        "data.max_patches_per_epoch=256", "data.max_eval_patches=128"]


def _config(cache, *extra):
    return load_config(None, [f"data.cache={cache}", "data.train=001", "data.val=002", "data.test=003"] + TINY + list(extra))


@pytest.fixture(scope="module")
def trained(cache, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "run"
    summary = train(_config(cache, "optim.epochs=6"), run, progress=False)
    return run, summary


def test_training_lowers_the_loss_tenfold(trained):
    run, summary = trained
    with (run / "steps.csv").open() as handle:
        steps = [float(r["loss"]) for r in csv.DictReader(handle)]
    first = np.mean(steps[:3])
    last_epoch = np.mean(steps[-16:])
    assert first / last_epoch >= 10, (first, last_epoch)
    assert summary["test_loss"] < 0.2 * first


def test_run_folder_contents(trained):
    run, summary = trained
    for name in ("config.toml", "split.json", "normalization.json", "history.csv", "steps.csv",
                 "learning_curve.png", "checkpoint.pt", "summary.json", "model/model.json", "model/model.safetensors"):
        assert (run / name).exists(), name
    with (run / "history.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == list(range(1, 7))
    assert all(r["val_loss"] for r in rows)
    lrs = [float(r["lr"]) for r in rows]
    assert lrs[3] == pytest.approx(lrs[0]) and lrs[4] == pytest.approx(lrs[0] / 2)  # halved every 4 epochs
    info = json.loads((run / "model" / "model.json").read_text())
    assert info["n_layers"] == 5 and info["in_channels"] == 9 and info["kind"] == "fcn"
    assert info["normalization"]["method"] == "robust" and "torch" in info["versions"]
    assert info["training"]["subjects"]["train"] == ["001"]


def test_eval_mode_after_recalibration_is_as_good_as_batch_statistics(trained, cache):
    run, _ = trained
    model, _ = load_model(run / "model")
    data = build_data(load_config(run / "config.toml"))
    eval_loss = mean_loss(model, data.test, 16, "cpu")
    model.train()  # batch statistics, as during training
    with torch.no_grad():
        total = count = 0
        for i in range(0, len(data.test), 16):
            inputs, target = zip(*(data.test[j] for j in range(i, min(i + 16, len(data.test)))))
            out = model(torch.stack(inputs))
            total += torch.sum((out - torch.stack(target)) ** 2).item()
            count += out.numel()
    assert eval_loss <= 1.5 * total / count


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(cache, tmp_path):
    straight = train(_config(cache, "optim.epochs=3"), tmp_path / "straight", progress=False)
    stopped = train(_config(cache, "optim.epochs=3"), tmp_path / "resumed", progress=False, stop_after_epoch=2)
    assert stopped == {"stopped_after_epoch": 2}
    with pytest.raises(InputError, match="already holds a run"):
        train(_config(cache, "optim.epochs=3"), tmp_path / "resumed", progress=False)
    resumed = train(load_config(tmp_path / "resumed" / "config.toml"), tmp_path / "resumed", resume=True, progress=False)
    a = load_file(str(tmp_path / "straight" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "model" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert straight["test_loss"] == resumed["test_loss"]
    assert (tmp_path / "straight" / "history.csv").read_text().count("\n") == \
        (tmp_path / "resumed" / "history.csv").read_text().count("\n")


def test_config_round_trips_through_toml(tmp_path):
    config = load_config(None, ["data.train=a,b", "optim.lr=0.01", "seed=3"], presets=["paper"])
    assert config.optim.lr == pytest.approx(0.01) and config.data.norm == "paper" and config.data.train == ["a", "b"]
    (tmp_path / "c.toml").write_text(to_toml(config))
    assert load_config(tmp_path / "c.toml") == config
    with pytest.raises(InputError, match="unknown config field"):
        load_config(None, ["optim.learning_rate=1"])
    with pytest.raises(InputError, match="cannot read"):
        load_config(None, ["optim.epochs=many"])


def test_predict_keeps_affine_shape_and_header(trained, cache, tmp_path, run_cli):
    run, _ = trained
    source = json.loads((cache / "003" / "subject.json").read_text())["sources"]
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


def test_predict_input_errors(trained, cache, tmp_path, run_cli):
    run, _ = trained
    source = json.loads((cache / "003" / "subject.json").read_text())["sources"]
    code, _, err = run_cli("predict", "--model", run / "model", "--t1", source["t1"]["path"], "--out", tmp_path / "x.nii.gz")
    assert code == 2 and "uses tissue masks" in err and source["t1"]["path"] in err
    other = tmp_path / "other_mask.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((10, 10, 10), np.uint8), np.eye(4)), str(other))
    code, _, err = run_cli("predict", "--model", run / "model", "--t1", source["t1"]["path"], "--seg",
                           source["seg"]["path"], "--mask", other, "--out", tmp_path / "x.nii.gz")
    assert code == 2 and "grid differs" in err and str(other) in err
    assert not (tmp_path / "x.nii.gz").exists()


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


def test_baselines_fit_what_a_lookup_table_can(trained, cache, tmp_path, run_cli):
    run, _ = trained
    paths = fit_for_run(run)
    tissue, _ = load_model(paths["tissue-mean"])
    mapping, _ = load_model(paths["intensity-map"])
    assert isinstance(tissue, TissueMean) and isinstance(mapping, IntensityMap)
    # tissue-mean: the fixture's grey matter has one T2w value, so its group mean is that value
    prepared = list_prepared(cache)[0]
    norm = Normalization.load(run / "normalization.json")
    scale, shift = norm.transform("t2", prepared.stats)
    bits = np.asarray(prepared.array("tissue"))
    grey_in_brain = ((bits >> labels.BIT["grey_matter"]) & 1 == 1) & (bits & 1 == 1)
    expected = float(np.mean(np.asarray(prepared.array("t2"))[grey_in_brain])) * scale + shift
    group = 2 * (labels.BIT["grey_matter"] - 1) + 1
    assert tissue.table[group].item() == pytest.approx(expected, rel=0.05)
    data = build_data(load_config(run / "config.toml"))
    inputs, target = data.test[len(data.test) // 2]
    assert tissue(inputs[None]).shape == target[None].shape == mapping(inputs[None]).shape
    # intensity map: exact on a noiseless monotone relation
    x = torch.linspace(-1, 3, 1000)
    fitted = IntensityMap(x[::10], torch.tanh(x[::10]))
    inputs = torch.zeros(1, 9, 1, 1000)
    inputs[0, 0, 0] = x
    torch.testing.assert_close(fitted(inputs)[0, 0, 0], torch.tanh(x), atol=2e-3, rtol=0)
    # every model kind predicts and evaluates through the same CLI
    code, _, err = run_cli("predict", "--model", paths["tissue-mean"], "--data", cache, "--out-dir", tmp_path / "p", "--quiet")
    assert code == 0, err
    code, out, err = run_cli("evaluate", "--pred", tmp_path / "p", "--ref", cache, "--json", tmp_path / "e.json")
    assert code == 0, err
    result = json.loads((tmp_path / "e.json").read_text())
    assert set(result["per_subject"]) == {"001", "002", "003"} and result["summary"]["mse"]["n"] == 3
    assert "mean ± SD" in out


def test_cli_train_and_errors(cache, tmp_path, run_cli):
    code, out, err = run_cli("train", "--cache", cache, "--out", tmp_path / "r", "--train", "001", "--test", "003",
                             "--epochs", "1", "--quiet", *sum((["--set", s] for s in TINY), []))
    assert code == 0, err
    assert json.loads(out[: out.rindex("}") + 1])["epochs"] == 1
    code, _, err = run_cli("train", "--cache", cache, "--out", tmp_path / "r2", "--train", "nobody", "--quiet")
    assert code == 2 and "nobody" in err
    code, _, err = run_cli("train", "--resume", tmp_path / "nothing", "--quiet")
    assert code == 2
