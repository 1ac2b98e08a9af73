"""Whole-volume prediction of a 260 x 311 x 260 subject (HCP's 0.7 mm grid): end to end (files in, file out) and
compute only.

The subject is the HCP MNI152 template of `../shared/data` resampled to HCP's grid (skipped where it
is absent): its skull-stripped T1w (`MNI152_T1_1mm_brain`, 30 % of the field of view non-zero, as
the paper's skull-stripped input) and a whole-head T1w (`MNI152_T1_2mm`, 94 % non-zero, signal
nearly everywhere as in `T1w_acpc_dc`), with `Avgwmparc` and the brain mask. Each path runs in its
own process (its own peak RSS), `mrsynth.inference.predict.predict_files` timed from the NIfTI files to the
written `.nii.gz`; "compute" is `predict_slices` alone. The paper's 9-layer network with masks and
the quality preset's network from the T1w alone (its U-Net and lookup table), untrained weights with
random biases and BatchNorm statistics (speed does not depend on them; the background response is
then not flat). Compared in one run: background skipping on and off (with the largest difference
between their outputs), the FCN's crops padded with the background slice's activation
(`WindowedStack`) against crops grown by twice the receptive radius, ISA-L gzip on and off, and the
`mrsynth predict` command's wall time (interpreter start, imports and model loading included).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from benchmarks.fixtures import SHARED, Skipped, child_json

TEMPLATES = SHARED / "hcp-mni152"
HCP_VOXEL = 0.7
HCP_SHAPE = (260, 311, 260)
RUNS = 5

#: name: (network, T1w file, skip background, ISA-L gzip, FCN windows padded with the background's activation)
PATHS = {
    "paper FCN + masks, skull-stripped T1w": ("fcn", "t1_brain", True, True, True),
    "paper FCN + masks, skull-stripped T1w, background skipping off": ("fcn", "t1_brain", False, True, True),
    "paper FCN + masks, skull-stripped T1w, zlib instead of ISA-L gzip": ("fcn", "t1_brain", True, False, True),
    "paper FCN + masks, skull-stripped T1w, crops grown by twice the radius (until 2026-12-01)": (
        "fcn",
        "t1_brain",
        True,
        True,
        False,
    ),
    "paper FCN + masks, whole-head T1w": ("fcn", "t1_head", True, True, True),
    "paper FCN + masks, whole-head T1w, background skipping off": ("fcn", "t1_head", False, True, True),
    "quality U-Net, T1w only, skull-stripped T1w": ("unet", "t1_brain", True, True, True),
    "quality U-Net, T1w only, skull-stripped T1w, background skipping off": ("unet", "t1_brain", False, True, True),
}

CHILD = textwrap.dedent("""
    import json, resource, sys, time
    from pathlib import Path
    import numpy as np
    from mrsynth.io import nifti
    from mrsynth.inference import predict
    from mrsynth.networks import load_model
    model_dir, t1, seg, mask, out, skip, gzip, windowed, runs = sys.argv[1:]
    if gzip == "zlib":
        nifti.igzip = None
    if windowed == "0":  # every network of finite radius cropped as before WindowedStack
        predict.is_plain_stack = lambda model: False
    model, info = load_model(model_dir)
    compute = []
    original = predict.predict_slices
    def timed(*args, **kwargs):
        start = time.perf_counter()
        result = original(*args, skip_background=skip == "1", **kwargs)
        compute.append(time.perf_counter() - start)
        return result
    predict.predict_slices = timed
    masks = (Path(seg), Path(mask)) if info.uses_masks else (None, Path(mask))
    times = []
    for _ in range(int(runs) + 1):  # the first run warms up
        start = time.perf_counter()
        predict.predict_files(model, info, Path(t1), Path(out), *masks)
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"times": times[1:], "compute": compute[1:], "peak_rss_mb": peak}))
""")


def _hcp_grid_subject(folder: Path) -> dict[str, Path]:
    """The MNI152 template pair resampled to HCP's 0.7 mm grid (linear for T1w, nearest for labels)."""
    import nibabel as nib
    import numpy as np
    from scipy import ndimage

    def resample(name: str, order: int, dtype) -> tuple[np.ndarray, np.ndarray]:
        image = nib.load(str(TEMPLATES / name))
        data = np.asarray(image.dataobj, np.float32).squeeze()
        factor = np.sqrt((image.affine[:3, :3] ** 2).sum(axis=0))[0] / HCP_VOXEL
        zoomed = ndimage.zoom(data, factor, order=order)[tuple(slice(0, n) for n in HCP_SHAPE)]
        padded = np.zeros(HCP_SHAPE, np.float32)
        padded[tuple(slice(0, n) for n in zoomed.shape)] = zoomed
        affine = image.affine.copy()
        affine[:3, :3] *= HCP_VOXEL / np.sqrt((image.affine[:3, :3] ** 2).sum(axis=0))[0]
        return padded.astype(dtype), affine

    files = {}
    for key, name, order, dtype in (
        ("t1_brain", "MNI152_T1_1mm_brain.nii.gz", 1, np.float32),
        ("seg", "Avgwmparc.nii.gz", 0, np.int32),
        ("mask", "MNI152_T1_1mm_brain_mask.nii.gz", 0, np.uint8),
    ):
        data, affine = resample(name, order, dtype)
        files[key] = folder / f"{key}.nii.gz"
        nib.save(nib.Nifti1Image(data, affine), str(files[key]))
    head, _ = resample("MNI152_T1_2mm.nii.gz", 1, np.float32)  # same world box, same grid
    files["t1_head"] = folder / "t1_head.nii.gz"
    nib.save(nib.Nifti1Image(head, affine), str(files["t1_head"]))
    files["fraction_nonzero"] = {
        key: float((np.asarray(nib.load(str(files[key])).dataobj) != 0).mean()) for key in ("t1_brain", "t1_head")
    }
    return files


def _models(folder: Path) -> dict[str, Path]:
    """The two networks, saved as model folders, untrained with random biases and BatchNorm statistics."""
    import torch

    from mrsynth.networks import IntensityMap, ModelInfo, build_network, save_model
    from mrsynth.training import load_config

    quality = load_config(None, [], presets=["quality"]).model
    unet_norm, unet_lookup = quality.norm, quality.lookup
    torch.manual_seed(0)
    models = {}
    for kind, channels in (("fcn", 9), ("unet", 1)):
        norm, lookup = (
            ("batch", None)
            if kind == "fcn"
            else (unet_norm, IntensityMap(torch.linspace(0, 3, 64), torch.linspace(0, 2, 64)) if unet_lookup else None)
        )
        params = {"layers": 9} if kind == "fcn" else {"norm": norm}
        network = build_network(kind, channels, params, lookup=lookup)
        for module in network.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
                module.bias.data.uniform_(-0.2, 0.2)
            elif isinstance(module, torch.nn.Conv2d):
                module.bias.data.uniform_(-0.1, 0.1)
        info = ModelInfo(
            kind,
            channels,
            {"method": "robust", "t2_reference_scale": 300.0},
            64,
            32,
            "axial",
            params=params,
            lookup=lookup is not None,
        )
        models[kind] = save_model(folder / kind, network.eval(), info)
    return models


def _largest_difference(a: Path, b: Path) -> float:
    """max |a - b| / max |b| over the whole volume."""
    import nibabel as nib
    import numpy as np

    first, second = (np.asarray(nib.load(str(p)).dataobj, np.float64) for p in (a, b))
    return float(np.abs(first - second).max() / np.abs(second).max())


def _cli_seconds(model: Path, files: dict, out: Path, runs: int = 3) -> list[float]:
    command = [
        str(Path(sys.executable).with_name("mrsynth")),
        "predict",
        "--model",
        str(model),
        "--t1",
        str(files["t1_brain"]),
        "--seg",
        str(files["seg"]),
        "--mask",
        str(files["mask"]),
        "--out",
        str(out),
        "--quiet",
    ]
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def run() -> dict:
    if not TEMPLATES.exists():
        raise Skipped(f"{TEMPLATES} is absent (the HCP MNI152 templates)")
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        files = _hcp_grid_subject(scratch)
        models = _models(scratch)
        result = {"fraction_nonzero": files.pop("fraction_nonzero"), "paths": {}, "differences": {}}
        outputs = {}
        for index, (name, (kind, t1, skip, isal, windowed)) in enumerate(PATHS.items()):
            outputs[name] = scratch / f"out{index}.nii.gz"
            child = child_json(
                CHILD,
                str(models[kind]),
                str(files[t1]),
                str(files["seg"]),
                str(files["mask"]),
                str(outputs[name]),
                str(int(skip)),
                "isal" if isal else "zlib",
                str(int(windowed)),
                str(RUNS),
            )
            result["paths"][name] = {
                "end_to_end_median_s": statistics.median(child["times"]),
                "end_to_end_s": child["times"],
                "compute_median_s": statistics.median(child["compute"]),
                "peak_rss_mb": child["peak_rss_mb"],
                "network": kind,
                "t1": t1,
                "skip_background": skip,
                "isal": isal,
                "windowed": windowed,
            }
        full = {(kind, t1): name for name, (kind, t1, skip, _, _) in PATHS.items() if not skip}
        for name, (kind, t1, skip, _, _) in PATHS.items():
            if skip:
                result["differences"][name] = _largest_difference(outputs[name], outputs[full[(kind, t1)]])
        result["cli_s"] = _cli_seconds(models["fcn"], files, scratch / "cli.nii.gz")
    return result


def markdown(result: dict) -> str:
    rows = ["| path | end to end, median s | compute, median s | peak RSS MB |", "|---|---|---|---|"]
    for name, p in result["paths"].items():
        rows.append(
            f"| {name} | {p['end_to_end_median_s']:.2f} | {p['compute_median_s']:.2f} | {p['peak_rss_mb']:.0f} |"
        )
    default = result["paths"]["paper FCN + masks, skull-stripped T1w"]
    fraction = result["fraction_nonzero"]
    differences = ", ".join(f"{name}: {value:.1e}" for name, value in sorted(result["differences"].items()))
    cli = result["cli_s"]
    return "\n".join(
        rows
        + [
            "",
            f"{RUNS} runs per path after one warm-up; non-zero fraction of the field of view: skull-stripped T1w "
            f"{fraction['t1_brain']:.2f}, whole-head T1w {fraction['t1_head']:.2f}.",
            f"Largest difference between each path's output and the same network's without background skipping, "
            f"relative to the largest output value: {differences} (target: <= 1e-5).",
            f"`mrsynth predict` (paper FCN + masks, skull-stripped T1w) as a command, interpreter start, imports and "
            f"model loading included: median {statistics.median(cli):.2f} s of {len(cli)}.",
            f"Target: end to end <= 10 s, peak RSS <= 2 GB; the default path: {default['end_to_end_median_s']:.2f} s, "
            f"{default['peak_rss_mb']:.0f} MB.",
        ]
    )
