"""Training (mrsynth.training.trainer, mrsynth.training.runs): loss, run folder, eval-mode quality, resume, tiles,
memory layouts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import TINY, tiny_config
from safetensors.torch import load_file

from mrsynth.errors import InputError
from mrsynth.networks import InputSpec, load_model, slice_offsets
from mrsynth.training import build_data, load_config, mean_loss, runs, train

BASE = [
    "data.patch_size=16",
    "data.stride=8",
    "data.channels=9",
    "model.layers=4",
    "optim.batch_size=16",
    "optim.lr=0.003",
    "val_recalibration_batches=2",
    "bn_recalibration_batches=4",
    "data.max_patches_per_epoch=128",
    "data.max_eval_patches=64",
    "optim.epochs=2",
]


def test_training_lowers_the_loss_tenfold(trained):
    run, summary, _ = trained
    steps = [float(r["loss"]) for r in runs.read_steps(run)]
    first = np.mean(steps[:3])
    last_epoch = np.mean(steps[-16:])
    assert first / last_epoch >= 10, (first, last_epoch)
    assert summary["test_loss"] < 0.2 * first


def test_run_folder_contents(trained):
    run, summary, _ = trained
    for name in (
        runs.CONFIG,
        runs.SPLIT,
        runs.NORMALIZATION,
        runs.HISTORY,
        runs.STEPS,
        runs.LEARNING_CURVE,
        runs.CHECKPOINT,
        runs.SUMMARY,
        "model/model.json",
        "model/model.safetensors",
    ):
        assert (run / name).exists(), name
    rows = runs.read_history(run)
    assert [int(r["epoch"]) for r in rows] == list(range(1, 7))
    assert all(r["val_loss"] for r in rows)
    lrs = [float(r["lr"]) for r in rows]
    assert lrs[3] == pytest.approx(lrs[0]) and lrs[4] == pytest.approx(lrs[0] / 2)  # halved every 4 epochs
    info = json.loads((run / "model" / "model.json").read_text())
    assert info["params"] == {"layers": 5, "width": 32} and info["spec"]["tissue_masks"] and info["kind"] == "fcn"
    assert info["spec"]["normalization"]["method"] == "robust" and "torch" in info["versions"]
    assert info["training"]["subjects"]["train"] == ["001"]
    assert runs.is_finished(run) and runs.read_summary(run) == summary
    assert not list(run.glob(".*tmp*"))


def test_eval_mode_after_recalibration_is_as_good_as_batch_statistics(trained):
    run, _, _ = trained
    model, _ = load_model(run / "model")
    data = runs.load_run_data(run)
    eval_loss = mean_loss(model, data.test, 16, "cpu")
    model.train()  # batch statistics, as during training
    with torch.no_grad():
        total = count = 0
        for i in range(0, len(data.test), 16):
            inputs, target = data.test[list(range(i, min(i + 16, len(data.test))))]
            out = model(inputs)
            total += torch.sum((out - target) ** 2).item()
            count += out.numel()
    assert eval_loss <= 1.5 * total / count


@pytest.mark.parametrize("extra", [[], ["optim.ema=0.9"]])
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(cache, tmp_path, extra):
    straight = train(tiny_config(cache, "optim.epochs=3", *extra), tmp_path / "straight", progress=False)
    stopped = train(
        tiny_config(cache, "optim.epochs=3", *extra), tmp_path / "resumed", progress=False, stop_after_epoch=2
    )
    assert stopped == {"stopped_after_epoch": 2}
    with pytest.raises(InputError, match="already holds a run"):
        train(tiny_config(cache, "optim.epochs=3", *extra), tmp_path / "resumed", progress=False)
    resumed = train(runs.resume_config(tmp_path / "resumed"), tmp_path / "resumed", resume=True, progress=False)
    a = load_file(str(tmp_path / "straight" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "model" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert straight["test_loss"] == resumed["test_loss"]
    assert len(runs.read_history(tmp_path / "resumed")) == 3
    assert [r["train_loss"] for r in runs.read_history(tmp_path / "resumed")] == [
        r["train_loss"] for r in runs.read_history(tmp_path / "straight")
    ]
    state = torch.load(tmp_path / "straight" / runs.CHECKPOINT, weights_only=True)
    last = {k: v for k, v in state["model"].items() if k in a}
    if extra:  # the export is the moving average of the weights, not the last weights
        assert state["averaged"]["n_averaged"] > 1
        assert all(
            torch.equal(a[k], state["averaged"][f"module.{k}"])
            for k in a
            if "running" not in k and "num_batches" not in k
        )
        assert not all(torch.equal(a[k], last[k]) for k in last if "running" not in k and "num_batches" not in k)
    else:
        assert state["averaged"] is None


def test_resume_config_refuses_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(InputError, match="not a run folder"):
        runs.resume_config(tmp_path)


def test_cli_train_and_errors(cache, tmp_path, run_cli):
    code, out, err = run_cli(
        "train",
        "--cache",
        cache,
        "--out",
        tmp_path / "r",
        "--train",
        "001",
        "--test",
        "003",
        "--epochs",
        "1",
        "--quiet",
        *sum((["--set", s] for s in TINY), []),
    )
    assert code == 0, err
    assert json.loads(out[: out.rindex("}") + 1])["epochs"] == 1
    code, _, err = run_cli("train", "--cache", cache, "--out", tmp_path / "r2", "--train", "nobody", "--quiet")
    assert code == 2 and "nobody" in err
    code, _, err = run_cli("train", "--resume", tmp_path / "nothing", "--quiet")
    assert code == 2


def test_tile_training_learns_and_refuses_within_subject_splits(cache, tmp_path):
    config = load_config(
        None,
        [f"data.cache={cache}", "data.train=001", "data.test=003", "data.sampling=tiles", "data.tile_size=24"]
        + BASE
        + ["optim.epochs=4"],
    )
    summary = train(config, tmp_path / "tiles", progress=False)
    steps = [float(r["loss"]) for r in runs.read_steps(tmp_path / "tiles")]
    # tiles of 24 px cover each 40 x 48 slice with 2 x 2 tiles: far fewer items than the 16/8 patch grid
    assert summary["train_patches"] == 36 * 4
    assert summary["test_loss"] < 0.5 * np.mean(steps[:2]), (summary["test_loss"], steps[:2])
    within = load_config(None, [f"data.cache={cache}", "data.split=within", "data.sampling=tiles"] + BASE)
    with pytest.raises(InputError, match="tile sampling needs an across-subject split"):
        build_data(within)


def test_channels_last_training_matches_the_plain_path(cache, tmp_path):
    common = [f"data.cache={cache}", "data.train=001", "data.test=003"] + BASE
    fast = train(load_config(None, common + ["channels_last=true"]), tmp_path / "fast", progress=False)
    plain = train(load_config(None, common + ["channels_last=false"]), tmp_path / "plain", progress=False)
    # float rounding differs between memory layouts and compounds over the steps of a run
    assert fast["test_loss"] == pytest.approx(plain["test_loss"], rel=0.05)


def test_one_training_step_is_the_same_in_both_memory_layouts():
    import torch.nn.functional as F

    from mrsynth.networks import FCN

    results = []
    for layout in (torch.contiguous_format, torch.channels_last):
        torch.manual_seed(0)
        model = FCN(9, 9).to(memory_format=layout)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-9)
        x = torch.randn(8, 9, 32, 32, generator=torch.Generator().manual_seed(1)).contiguous(memory_format=layout)
        y = torch.randn(8, 1, 32, 32, generator=torch.Generator().manual_seed(2))
        loss = F.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        results.append((loss.item(), model(x).detach()))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-5)
    torch.testing.assert_close(results[0][1], results[1][1].contiguous(), rtol=1e-4, atol=1e-4)


def test_unet_2p5d_l1_ssim_augmented_training_predicts_whole_volumes(cache, tmp_path):
    from mrsynth.data import list_prepared
    from mrsynth.inference import predict_prepared
    from mrsynth.networks import load_model

    config = load_config(
        None,
        BASE
        + [
            f"data.cache={cache}",
            "data.train=001",
            "data.test=003",
            "model.kind=unet",
            "model.features=8,8,8,16,16,8",
            "data.context=1",
            "optim.loss=l1+ssim",
            "augment.gamma=0.3",
            "augment.bias=0.2",
            "augment.noise=0.02",
            "augment.flips=true",
            "augment.rotate=10",
            "augment.scale=0.05",
            "data.sampling=tiles",
            "data.tile_size=32",
            "optim.epochs=3",
        ],
    )
    summary = train(config, tmp_path / "unet", progress=False)
    steps = [float(r["loss"]) for r in runs.read_steps(tmp_path / "unet")]
    assert np.mean(steps[-3:]) < 0.7 * np.mean(steps[:3]), steps
    model, info = load_model(tmp_path / "unet" / "model")
    assert (info.kind, info.spec.context, info.in_channels, info.params["features"]) == (
        "unet",
        1,
        11,
        [8, 8, 8, 16, 16, 8],
    )
    assert info.uses_masks and summary["test_loss"] > 0
    subject = list_prepared(cache)[2]
    volume = predict_prepared(model, info, subject)
    assert volume.shape == tuple(subject.meta["shape"]) and np.isfinite(volume).all()


@pytest.mark.parametrize("strip", [False, True])
def test_2p5d_prediction_sees_the_same_input_as_training(cache, strip):
    """A patch's prediction equals the whole-slice prediction at the same place (neighbours and stripping included)."""
    from mrsynth.data import PatchDataset, PatchGrid, list_prepared
    from mrsynth.networks import FCN, ModelInfo, Normalization, predict_slices, recalibrate_batchnorm

    subject = list_prepared(cache)[0]
    norm = Normalization.fit("robust", [subject.stats])
    dataset = PatchDataset(
        [subject],
        InputSpec(offsets=slice_offsets(2), tissue_masks=True, normalization=norm, strip=strip),
        PatchGrid(16, 8),
    )
    assert dataset.input_channels == 13
    torch.manual_seed(0)
    model = FCN(3, 13)
    recalibrate_batchnorm(model, [dataset[list(range(8))][0]])
    model.layers[-1].bias.data += 10.0  # predictions above 0, where clipping at 0 hides nothing
    model.eval()
    info = ModelInfo("fcn", dataset.spec.with_normalization(Normalization("robust")), params={"layers": 3})  # x 1
    tissue = np.asarray(subject.array("tissue"))
    whole = predict_slices(
        model,
        info,
        subject.array("t1"),
        tissue,
        norm.transform("t1", subject.stats),
        optimized=False,
        brain=(tissue & 1) == 1,
    )
    if strip:  # the T1w channels are zero outside the brain
        inputs = dataset[list(range(len(dataset)))][0]
        outside = inputs[:, 5:6] < 0  # the brain-mask channel (after the 5 T1w channels), coded -1 outside
        assert outside.any() and torch.all(inputs[:, 0:1][outside] == 0)
        assert (inputs[:, 0:1][~outside] != 0).float().mean() > 0.9
    for item in (0, 1, len(dataset) // 2, len(dataset) - 1):  # first and last slices: neighbours outside
        _, s, r, c = dataset.locate(item)
        with torch.no_grad():
            patch = model(dataset[item][0][None])[0, 0].numpy()
        # interior of the patch (3 layers: 3-pixel margin) where the patch and the slice see the same pixels
        np.testing.assert_allclose(patch[3:-3, 3:-3], whole[s, r + 3 : r + 13, c + 3 : c + 13], rtol=1e-4, atol=1e-4)


def test_lookup_unet_corrects_the_training_brains_table_and_round_trips_through_its_model_file(cache, tmp_path):
    from mrsynth.data import list_prepared
    from mrsynth.inference import predict_prepared
    from mrsynth.training.baselines import brain_voxels

    config = load_config(
        None,
        BASE
        + [
            f"data.cache={cache}",
            "data.train=001,002",
            "data.test=003",
            "model.kind=unet",
            "model.features=8,8,8,16,16,8",
            "model.norm=none",
            "model.lookup=true",
            "data.sampling=tiles",
            "data.tile_size=32",
            "data.min_brain=0.05",
        ],
    )
    train(config, tmp_path / "run", progress=False)
    model, info = load_model(tmp_path / "run" / "model")
    assert info.lookup and info.params["norm"] == "none" and info.in_channels == 9
    # the table: mean normalized T2w of each T1w quantile bin over both training brains (0 -> 0 added below them)
    data = build_data(config)
    x, y = brain_voxels([p.subject for p in data.train.parts], data.normalization)
    assert len(x) == sum(int(labels_in_brain(s).sum()) for s in list_prepared(cache)[:2])
    knots_x, knots_y = model.lookup.knots_x.numpy(), model.lookup.knots_y.numpy()
    assert knots_x[0] == knots_y[0] == 0 and np.all(np.diff(knots_x) > 0)
    edges = np.quantile(x, np.linspace(0, 1, 65))
    first = x < edges[1]
    assert knots_x[1] == pytest.approx(x[first].mean(), rel=1e-5) and knots_y[1] == pytest.approx(
        y[first].mean(), rel=1e-5
    )
    subject = list_prepared(cache)[2]
    volume = predict_prepared(model, info, subject)
    assert volume.shape == tuple(subject.meta["shape"]) and np.isfinite(volume).all()
    resumed = train(
        runs.resume_config(tmp_path / "run", ["optim.epochs=3"]), tmp_path / "run", resume=True, progress=False
    )
    assert resumed["epochs"] == 3
    with pytest.raises(InputError, match="scaling normalization"):
        train(
            load_config(
                None,
                [f"data.cache={cache}", "data.train=001", "data.test=003", "model.lookup=true", "data.norm=paper"]
                + BASE,
            ),
            tmp_path / "paper",
            progress=False,
        )


def labels_in_brain(subject):
    from mrsynth import labels

    return labels.in_brain(np.asarray(subject.array("tissue")))
