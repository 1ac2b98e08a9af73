"""The main job on the embedded default data (`make demo`), in a few minutes on a laptop CPU.

simulate 3 subjects from the package-shipped MNI152 anatomy -> prepare -> train the
paper's 9-layer network with tissue masks on one subject (validation on a second), and
a second model with the recommended preset (``--preset quality``) from the T1w alone ->
fit the two baselines on the same training subject -> predict the third subject's whole
T2w volume with all four, and with the shipped pretrained model (zero-shot: it has seen no
pair of this site) -> score them -> figure and table.

Reductions from the paper, for a 2-core CPU: 64 x 64 patches at stride 32 (the network is
fully convolutional with a 19-pixel receptive field, so it predicts whole slices all the
same), 1,024 random training patches per epoch, 6 epochs, learning rate 1e-3 halved every
4 epochs (the paper's 0.1 does not train; see docs/training.md).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..atomic import write_text
from ..data import list_prepared, prepare_all
from ..errors import InputError
from ..evaluation import Reference, prepared_page, score, write_page
from ..figures import prediction_figure
from ..inference import Model
from ..io import discover
from ..logs import log
from ..networks import PRETRAINED
from ..report import format_table
from ..simulate import simulate_dataset, write_figure
from ..training import BASELINES, Lookup, Network, load_config, read_summary

DEMO_SETTINGS = [
    "data.train=sim001",
    "data.val=sim002",
    "data.test=sim003",
    "data.channels=9",
    "model.layers=9",
    "data.patch_size=64",
    "data.stride=32",
    "data.max_patches_per_epoch=1024",
    "data.max_eval_patches=256",
    "optim.epochs=6",
    "optim.batch_size=32",
    "optim.lr=0.001",
    "val_recalibration_batches=4",
    "bn_recalibration_batches=32",
]
#: The recommended preset from a bare T1w, with the same number of training patches per epoch and epochs.
QUALITY_PRESETS = ["quality"]
QUALITY_SETTINGS = [
    "data.train=sim001",
    "data.val=sim002",
    "data.test=sim003",
    "data.channels=1",
    "data.max_patches_per_epoch=1024",
    "data.max_eval_patches=256",
    "optim.epochs=6",
    "val_recalibration_batches=4",
    "bn_recalibration_batches=32",
]
PAPER_MODEL, QUALITY_MODEL = "9-layer FCN + masks (paper)", "--preset quality, T1w only"
ZERO_SHOT = "pretrained, zero-shot (no training)"


def run_demo(out: Path) -> dict:
    started = time.perf_counter()
    data, cache, run, quality_run = out / "data", out / "cache", out / "run", out / "run-quality"
    if run.exists():
        raise InputError(f"{run} exists already: remove {out} or pick another --out")
    folders = simulate_dataset(data, 3, seed=0)
    write_figure(folders, out / "simulated_subjects.png")
    prepare_all(discover(data), cache)
    paper = Network(load_config(None, [f"data.cache={cache}"] + DEMO_SETTINGS))
    quality = Network(load_config(None, [f"data.cache={cache}"] + QUALITY_SETTINGS, QUALITY_PRESETS))
    models = {PAPER_MODEL: paper.fit(run), QUALITY_MODEL: quality.fit(quality_run)}
    models.update({kind: Lookup(kind).fit(run) for kind in BASELINES})  # on the paper model's training subject
    models[ZERO_SHOT] = Model.load(PRETRAINED)  # the shipped model: no pair of this site seen
    summary, quality = read_summary(run), read_summary(quality_run)
    test = {s.id: s for s in list_prepared(cache)}["sim003"]
    volumes = test.native()
    reference = Reference.from_prepared(test)
    predictions = {name: model.predict(test) for name, model in models.items()}
    scores = {name: score(volume, reference) for name, volume in predictions.items()}
    prediction_figure(volumes.t1, volumes.t2, predictions, volumes.brain, out / "prediction.png", test.meta["axis"])
    write_page(
        out / "view.html",
        prepared_page(predictions[QUALITY_MODEL], test),
        f"mrsynth demo: sim003 predicted by {QUALITY_MODEL}",
    )
    table = format_table(scores)
    tissue = format_table(
        scores,
        keys=["mse_grey_matter", "mse_white_matter", "mse_csf", "mse_subcortical", "mse_cerebellum", "mse_unknown"],
    )
    text = (
        f"# mrsynth demo\n\nTrained on sim001 (the paper's network {summary['train_seconds']:.0f} s, "
        f"{summary['patches_per_s']:.0f} patches/s of 64 px; --preset quality {quality['train_seconds']:.0f} s), "
        "tested on the whole volume of sim003; the pretrained model predicts it zero-shot (trained on nothing of this "
        "site). Scores in brain-median units (psnr_p99: each volume by its own brain 99th percentile; psnr_optimal: "
        "the prediction times its best gain to the reference in its p99 units); all but mse_fov inside the brain "
        "mask.\n\n"
        f"{table}\n\nPer-tissue MSE:\n\n{tissue}\n"
    )
    write_text(out / "results.md", text)
    write_text(
        out / "results.json",
        json.dumps({"training": summary, "training_quality": quality, "scores": scores}, indent=2) + "\n",
    )
    print("\n" + text)
    log.info(
        "outputs in %s: results.md, results.json, prediction.png, view.html (interactive), simulated_subjects.png, "
        "run/ and run-quality/ (model, history, learning_curve.png); %.0f s in all",
        out,
        time.perf_counter() - started,
    )
    return scores
