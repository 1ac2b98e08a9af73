"""The paper's within-subject protocol on real HCP data (HCP MNI152 T1w/T2w templates with Avgwmparc), robust
normalization.

One subject (the templates, 1 mm, 182 x 218 x 182), 128 x 128 patches at stride 24,
patches split 80/1/19 with seed 0, the 9-layer network with tissue masks, trained briefly
on the CPU (3 epochs, lr 1e-3; the paper's 0.1 does not train). The two baselines are
fitted on the same training patches; all three are scored on the same 19 % test patches
in the normalization's units: the paper's patch MSE (every pixel) and the MSE over brain
pixels. Skipped (no result written) where ../shared/data/hcp-mni152 is absent.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from benchmarks.fixtures import SHARED, require_shared

DATA = SHARED / "hcp-mni152"
FILES = {
    "T1w_acpc_dc.nii.gz": "MNI152_T1_1mm_brain.nii.gz",
    "T2w_acpc_dc.nii.gz": "MNI152_T2_1mm_brain.nii.gz",
    "wmparc.nii.gz": "Avgwmparc.nii.gz",
    "brainmask_fs.nii.gz": "MNI152_T1_1mm_brain_mask.nii.gz",
}
EPOCHS = 3


def run(norm: str = "robust") -> dict:
    import torch

    from mrsynth.data import Split, prepare_all
    from mrsynth.io import discover
    from mrsynth.networks import load_model
    from mrsynth.training import build_data, fit_for_run, load_config, patch_losses, train

    require_shared("hcp-mni152")
    torch.set_num_threads(torch.get_num_threads())
    work = Path(tempfile.mkdtemp(prefix="hcp-within-"))
    folder = work / "hcp" / "mni152" / "T1w"
    folder.mkdir(parents=True)
    for name, original in FILES.items():
        (folder / name).symlink_to(DATA / original)
    prepare_all(discover(work / "hcp"), work / "cache", progress=False)
    config = load_config(
        None,
        [
            f"data.cache={work / 'cache'}",
            "data.split=within",
            f"data.norm={norm}",
            "data.channels=9",
            "model.layers=9",
            f"optim.epochs={EPOCHS}",
            "optim.batch_size=32",
            "optim.lr=0.001",
            "seed=0",
        ],
    )
    started = time.perf_counter()
    summary = train(config, work / "run", progress=False)
    wall = time.perf_counter() - started
    data = build_data(config, Split.load(work / "run" / "split.json"))
    scores = {"9-layer FCN + masks": {"mse": summary["test_loss"], "mse_brain": summary["test_loss_brain"]}}
    for kind, path in fit_for_run(work / "run").items():
        model, _ = load_model(path)
        scores[kind] = patch_losses(model, data.test, 32, "cpu")
    return {
        "norm": norm,
        "epochs": EPOCHS,
        "train_seconds": summary["train_seconds"],
        "run_wall_seconds": wall,
        "patches_per_s": summary["patches_per_s"],
        "train_patches": summary["train_patches"],
        "test_patches": summary["test_patches"],
        "scores": scores,
        "work_dir": str(work),
    }


def markdown(result: dict) -> str:
    lines = ["| model | test patch MSE (all pixels) | test patch MSE (brain pixels) |", "|---|---|---|"]
    for name, s in result["scores"].items():
        lines.append(f"| {name} | {s['mse']:.4g} | {s['mse_brain']:.4g} |")
    best = min(result["scores"], key=lambda n: result["scores"][n]["mse_brain"])
    lines += [
        "",
        f"Training: {result['epochs']} epochs over {result['train_patches']} patches in "
        f"{result['train_seconds']:.0f} s ({result['patches_per_s']:.1f} patches/s); "
        f"{result['test_patches']} test patches. Lowest brain MSE: {best}.",
    ]
    return "\n".join(lines)
