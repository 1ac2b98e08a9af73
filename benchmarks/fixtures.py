"""What benchmarks share, in one public module: where things are, timing and machine description, results files, and
the data the studies use (the real template pairs, simulated heads, a small masked FCN).

Every benchmark is a client of the library: models, tables and scores come from ``mrsynth``; this module only says
where the data lies and how it is laid out for the library's commands.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
#: The real third-party data beside the checkout (shared/data/README.md), or where MRSYNTH_SHARED_DATA says.
SHARED = Path(os.environ.get("MRSYNTH_SHARED_DATA") or HERE.parent.parent / "shared" / "data")
MAPS_DIR = SHARED / "synthseg-label-maps"
#: The template pairs: each one subject (1 mm), HCP's with its averaged wmparc.
HCP = {
    "t1": "hcp-mni152/MNI152_T1_1mm_brain.nii.gz",
    "t2": "hcp-mni152/MNI152_T2_1mm_brain.nii.gz",
    "mask": "hcp-mni152/MNI152_T1_1mm_brain_mask.nii.gz",
    "seg": "hcp-mni152/Avgwmparc.nii.gz",
}
ICBM = {
    "t1": "icbm2009c/mni_icbm152_t1_tal_nlin_sym_09c.nii.gz",
    "t2": "icbm2009c/mni_icbm152_t2_tal_nlin_sym_09c.nii.gz",
    "mask": "icbm2009c/mni_icbm152_t1_tal_nlin_sym_09c_mask.nii.gz",
}
#: The simulated heads of the masks studies: label maps, voxel size, pose.
HEADS, HEAD_VOXEL_MM = 20, 1.4
HEAD_POSE = {"rotation_deg": 7.5, "shift_mm": 8.0, "scale_sd": 0.05}
#: Epochs of the masks studies' FCN, and the seeds it is trained under where its spread is measured.
FCN_EPOCHS, FCN_SEEDS = 4, (0, 1, 2)


def uncalibrated_variation() -> dict:
    """The simulator's variation before its texture calibration (issue 30), as ``Variation`` fields."""
    from mrsynth.simulate.subject import UNCALIBRATED_TEXTURE

    return {"bias_strength": 0.12, "snr_range": (25.0, 45.0), "texture_sd": 0.04, **UNCALIBRATED_TEXTURE}


# --------------------------------------------------------------------------- running and recording


def machine() -> dict:
    """What the numbers were measured on."""
    import numpy
    import scipy
    import torch

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores_visible": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }


def repeat(run: Callable[[], None], runs: int = 5, warmup: int = 1) -> dict:
    """Median, min and max wall-clock seconds of ``runs`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "runs": runs,
        "warmup": warmup,
        "all_s": times,
    }


def save(name: str, result: dict, markdown: str) -> Path:
    """``results/NAME.json`` (the numbers) and ``results/NAME.md`` (its report, what a model card may quote)."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown.rstrip("\n") + "\n")
    return path


def figures_folder(name: str) -> Path:
    """Where a benchmark's figures go: ``results/NAME/``."""
    folder = RESULTS / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def pretrained_weights() -> str:
    """Which shipped pretrained model a benchmark measured: its name with recipe, and its weights' SHA-256."""
    from mrsynth.networks import PRETRAINED, read_description

    info = read_description(PRETRAINED)
    return f"{info.name()}, weights sha256 {info.weights_sha256[:8]}"


def single_core_prefix() -> list[str]:
    """``taskset -c 0`` where available, so a 'one core' figure really is one core."""
    try:
        subprocess.run(["taskset", "-c", "0", "true"], check=True, capture_output=True)
        return ["taskset", "-c", "0"]
    except (OSError, subprocess.CalledProcessError):
        return []


def child_json(code: str, *args: str, env: dict[str, str] | None = None) -> dict:
    """Run ``python -c code args`` in a fresh interpreter and parse its last stdout line as JSON.

    Process-wide settings (the allocator tuning, compiled kernels, peak RSS) then belong to
    one measurement only.  ``env`` adds to the current environment.
    """
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        check=True,
        capture_output=True,
        text=True,
        env=dict(os.environ, **(env or {})),
        cwd=HERE.parent,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


class Skipped(Exception):
    """A benchmark that cannot run here (its data or tool is absent): reported, no result written, not a failure."""


def require_shared(*names: str) -> None:
    """Skip the benchmark (no result written) where the real data it reads is absent."""
    missing = [name for name in names if not (SHARED / name).exists()]
    if missing:
        raise Skipped(f"{SHARED} lacks {', '.join(missing)} (see shared/data/README.md)")


# --------------------------------------------------------------------------- the paper's training step, timed


def step_timer(channels_last: bool, compile_model: bool, batch: int = 32, size: int = 128, layers: int = 9):
    """One training step of the paper's network (9 channels) on tensors in memory, as the library takes it
    (:class:`mrsynth.training.loop.Loop`): a callable."""
    import torch
    import torch.nn.functional as F

    from mrsynth.networks import FCN
    from mrsynth.training.loop import Loop

    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = FCN(layers, 9).to(memory_format=fmt)
    loop = Loop(model, torch.device("cpu"), compile=compile_model, memory_format=fmt)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-9)
    loop.use(optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0))
    x = torch.randn(batch, 9, size, size).contiguous(memory_format=fmt)
    y = torch.randn(batch, 1, size, size)
    return lambda: loop.train_step(x, lambda output: F.mse_loss(output, y))


#: The paper's network and step in Keras 3 / TensorFlow, fed by a Python patch generator (section 4.3).
KERAS_CHILD = textwrap.dedent("""
    import json, os, statistics, sys, time
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras
    from keras import layers
    blocks = [keras.Input((128, 128, 9))]
    for _ in range(8):
        blocks += [layers.Conv2D(32, 3, padding="same"), layers.BatchNormalization(momentum=0.99, epsilon=1e-3),
                   layers.ReLU()]
    blocks.append(layers.Conv2D(1, 3, padding="same"))
    model = keras.Sequential(blocks)
    model.compile(optimizer=keras.optimizers.Adam(1e-3, epsilon=1e-9), loss="mse")
    rng = np.random.default_rng(0)
    volume = rng.standard_normal((40, 260, 311, 10)).astype(np.float32)
    def patches(batch=32):  # a Python generator cutting random patches, as in the paper
        while True:
            s = rng.integers(0, 40, batch); r = rng.integers(0, 260 - 128, batch); c = rng.integers(0, 311 - 128, batch)
            cut = np.stack([volume[a, b:b + 128, d:d + 128] for a, b, d in zip(s, r, c)])
            yield cut[..., :9], cut[..., 9:]
    feed = patches()
    for _ in range(2):
        model.train_on_batch(*next(feed))
    times = []
    for _ in range(7):
        start = time.perf_counter(); model.train_on_batch(*next(feed)); times.append(time.perf_counter() - start)
    print(json.dumps({"step_s": times, "tensorflow": tf.__version__, "keras": keras.__version__}))
""")


def keras_step(python: str, env: dict[str, str]) -> dict:
    """The paper's training step in Keras / TensorFlow, run by ``python`` (a Python with tensorflow), timed:
    median, min and max seconds, and the versions."""
    env = dict(os.environ, OMP_NUM_THREADS="2", **env)
    out = subprocess.run([python, "-c", KERAS_CHILD], check=True, capture_output=True, text=True, env=env)
    keras = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        "median_s": statistics.median(keras["step_s"]),
        "min_s": min(keras["step_s"]),
        "max_s": max(keras["step_s"]),
        "versions": {k: keras[k] for k in ("tensorflow", "keras")},
    }


# --------------------------------------------------------------------------- the real template pairs


def write_template_pair(root: Path) -> None:
    """Both templates as HCP-layout subjects ``hcp`` and ``icbm``; ICBM's wmparc resampled from HCP's (nearest
    neighbour, world coordinates: both are MNI space)."""
    import nibabel as nib
    from nibabel.processing import resample_from_to

    from mrsynth.io import HCP_FOLDER, HCP_NAMES

    for name, files in (("hcp", HCP), ("icbm", ICBM)):
        folder = root / name / HCP_FOLDER
        folder.mkdir(parents=True)
        for role, path in files.items():
            (folder / f"{HCP_NAMES[role]}.nii.gz").symlink_to(SHARED / path)
    average = nib.load(str(SHARED / HCP["seg"]))
    average = nib.Nifti1Image(np.asarray(average.dataobj).reshape(average.shape[:3]), average.affine)
    icbm_t1 = nib.load(str(SHARED / ICBM["t1"]))
    seg = resample_from_to(average, icbm_t1, order=0)
    nib.save(
        nib.Nifti1Image(np.rint(seg.get_fdata()).astype(np.int32), icbm_t1.affine),
        str(root / "icbm" / HCP_FOLDER / f"{HCP_NAMES['seg']}.nii.gz"),
    )


def template_volumes(files: dict):
    """A template pair (``HCP`` or ``ICBM``) as volumes in memory: ``t1``, ``t2``, ``brain`` and ``affine``."""
    import nibabel as nib

    t1, t2, mask = (
        np.asarray(nib.load(str(SHARED / files[r])).dataobj, np.float32).squeeze() for r in ("t1", "t2", "mask")
    )
    affine = nib.load(str(SHARED / files["t1"])).affine
    return SimpleNamespace(t1=t1, t2=t2, brain=mask > 0, affine=affine)


def prepared_template_pair(tmp: Path) -> dict:
    """Both templates written (:func:`write_template_pair`) into ``tmp/data`` and prepared into ``tmp/cache``: id ->
    prepared subject."""
    from mrsynth.data import list_prepared, prepare_all
    from mrsynth.io import discover

    write_template_pair(tmp / "data")
    prepare_all(discover(tmp / "data"), tmp / "cache", progress=False)
    return {s.id: s for s in list_prepared(tmp / "cache")}


def table_from(*subjects, method: str = "robust"):
    """The library's plain lookup table (:func:`mrsynth.training.fit_table`) fitted on volumes with ``t1``, ``t2``
    and ``brain`` (prepared subjects' native volumes, simulated subjects): a model that predicts like any other."""
    from mrsynth.training import fit_table

    return fit_table([(s.t1, s.t2, _brain(s)) for s in subjects], method)


def predicted(model, volumes) -> np.ndarray:
    """``model`` (a :class:`mrsynth.inference.Model`) predicting volumes with ``t1``, ``affine`` and ``brain``: the
    T2w on their grid."""
    return model.predict_volume(volumes.t1, volumes.affine, mask=_brain(volumes))


def _brain(subject) -> np.ndarray:
    brain = getattr(subject, "brain", None)
    return np.asarray(brain if brain is not None else subject.mask > 0, bool)


# --------------------------------------------------------------------------- simulated heads and the masked FCN


def simulated_heads(root: Path, count: int = HEADS) -> list[dict]:
    """The first ``count`` simulated heads of the masks studies, written as HCP subjects under ``root`` (seeded: the
    same heads every run)."""
    from mrsynth.simulate import Variation, simulate_subject, write_hcp_subject
    from mrsynth.simulate.anatomy import label_map_anatomy, label_map_paths

    heads = []
    for i, path in enumerate(label_map_paths(MAPS_DIR)[:count], start=1):
        began = time.perf_counter()
        variation = replace(Variation(), **HEAD_POSE)
        subject = simulate_subject(label_map_anatomy(path), seed=i, voxel_size=HEAD_VOXEL_MM, variation=variation)
        print(f"{path.name}: simulated in {time.perf_counter() - began:.0f} s", flush=True)
        write_hcp_subject(subject, root, f"head{i:02d}")
        heads.append({"id": f"head{i:02d}", "index": i, "map": path.name, "subject": subject})
    return heads


def reference_seg(subject_folder: Path) -> np.ndarray:
    """The FreeSurfer codes of an HCP subject folder written by a benchmark."""
    import nibabel as nib

    return np.asarray(nib.load(str(subject_folder / "T1w" / "wmparc.nii.gz")).dataobj)


def train_masks_fcn(cache: Path, train: str, test: str, channels: int, out: Path, overrides: tuple[str, ...] = ()):
    """The masks studies' FCN (``--preset fast``, ``FCN_EPOCHS`` epochs), trained and loaded; ``overrides``
    (``key=value``) on top of its settings."""
    from mrsynth.networks import load_model
    from mrsynth.training import load_config, runs, train

    settings = [f"data.cache={cache}", f"data.train={train}", f"data.test={test}", f"data.channels={channels}"]
    settings += [f"optim.epochs={FCN_EPOCHS}", "data.max_eval_patches=256", *overrides]
    train(load_config(None, settings, presets=["fast"]), out, progress=False)
    return load_model(out / runs.MODEL)


# --------------------------------------------------------------------------- held-out simulated heads and figures

HELD_OUT_MAPS = (0, 1, 2, 3)  # label maps 1-4 (0-based): never seen in pretraining
OTHER_SITE_MAP = 9  # label map 10: the lookup table's training subject
KEYS = ("psnr_optimal", "psnr_p99", "psnr", "ssim_3d")


def held_out_cases():
    """Sequences outside the engine's ranges, each with a kind of lesion, then the same inside them."""
    from dataclasses import replace

    from mrsynth.simulate.engine import EngineSettings
    from mrsynth.simulate.pathology import PathologyOdds
    from mrsynth.simulate.signal import MPRAGE, SpinEcho

    settings = EngineSettings(stripped=0.0, random_head=0.0, thick=0.0, ghosting=0.0, gamma=0.0)
    ms = replace(settings, pathology=PathologyOdds(ms=1.0, tumour=0.0))
    tumour = replace(settings, pathology=PathologyOdds(ms=0.0, tumour=1.0))
    return {
        "MPRAGE TI 1350 ms, flip 14 deg, MS-like lesions": (MPRAGE(tr=2600, ti=1350, flip_deg=14.0), ms),
        "spin echo TR 1100 ms, TE 35 ms, tumour-like mass": (SpinEcho(tr=1100, te=35), tumour),
        "MPRAGE TI 1000 ms, flip 8 deg (in the training ranges), MS-like lesions": (
            MPRAGE(tr=2400, ti=1000, flip_deg=8.0),
            ms,
        ),
        "spin echo TR 500 ms, TE 15 ms (in the training ranges), tumour-like mass": (SpinEcho(tr=500, te=15), tumour),
    }


def scores(prediction, reference_t2, brain, seg=None) -> dict:
    from mrsynth.evaluation import evaluate_volume

    scores = evaluate_volume(prediction.astype(np.float32), reference_t2.astype(np.float32), brain, seg)
    return {k: v for k, v in scores.items() if k in KEYS or k.startswith("mse_")}


def lesion_contrast(volume, lesions, codes, brain) -> dict:
    """(median in each lesion kind / median in white matter) - 1."""
    from mrsynth import labels
    from mrsynth.simulate.pathology import LESIONS

    bits, _ = labels.tissue_bits(codes, brain)
    white = labels.has_class(bits, "white_matter") & brain & (lesions == 0)
    base = float(np.median(volume[white]))
    return {LESIONS[k]: float(np.median(volume[lesions == k])) / base - 1 for k in np.unique(lesions) if k}


def held_out_heads(model, figures: str, label: str = "zero-shot") -> dict:
    """The held-out simulated heads (label maps 1-4, never seen in pretraining), each with a T1w sequence outside
    the engine's ranges or inside them and a kind of lesion: ``model`` (a :class:`mrsynth.inference.Model`) against
    a lookup table fitted on a subject of another simulated site, scores and lesion contrasts; a figure per case in
    ``results/<figures>/``."""
    from mrsynth.simulate import Variation, simulate_subject
    from mrsynth.simulate.anatomy import label_map_anatomy, label_map_paths
    from mrsynth.simulate.engine import engine_subject

    maps = label_map_paths(MAPS_DIR)
    other_site = table_from(simulate_subject(label_map_anatomy(maps[OTHER_SITE_MAP]), 4242, 1.0, Variation()))
    out = {}
    for n, (case, (sequence, settings)) in enumerate(held_out_cases().items()):
        for index in HELD_OUT_MAPS:
            subject = engine_subject(maps[index], 9000 + 10 * index + n, settings, sequence=sequence)
            name = f"{case}, map {index + 1}"
            zero = predicted(model, subject)
            table = predicted(other_site, subject)
            entry = {
                label: scores(zero, subject.t2, subject.brain, subject.codes),
                "lookup table, another site": scores(table, subject.t2, subject.brain, subject.codes),
            }
            entry["lesion contrast"] = {
                "true": lesion_contrast(subject.t2, subject.lesions, subject.codes, subject.brain),
                label: lesion_contrast(zero, subject.lesions, subject.codes, subject.brain),
                "lookup table, another site": lesion_contrast(table, subject.lesions, subject.codes, subject.brain),
            }
            entry["parameters"] = {"t1w": subject.parameters["t1w"], "lesions": subject.parameters["lesions"]}
            out[name] = entry
            comparison_figure(
                subject.t1,
                subject.t2,
                subject.brain,
                {label: zero, "lookup table": table},
                figures_folder(figures) / f"simulated_{n}_map{index + 1}.png",
                name,
                subject.lesions,
            )
    return out


def comparison_figure(t1, t2, brain, predictions: dict, path: Path, title: str, lesions=None) -> None:
    """Axial slice through the lesions (or the middle of the brain): T1w, true T2w, each prediction and its error."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    where = np.argwhere(lesions > 0) if lesions is not None and lesions.any() else np.argwhere(brain)
    z = int(np.median(where[:, 2]))
    scale = lambda v: v / np.percentile(v[brain], 99)  # noqa: E731
    panels = [("T1w", scale(t1)), ("true T2w", scale(t2))]
    for name, volume in predictions.items():
        gain = float(volume[brain] @ scale(t2)[brain] / max(volume[brain] @ volume[brain], 1e-12))
        panels += [(name, volume * gain * brain), (f"{name}: error", np.abs(volume * gain - scale(t2)) * brain)]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 3.2))
    for ax, (label, image) in zip(axes, panels):
        ax.imshow(
            np.rot90(image[:, :, z]),
            cmap="magma" if "error" in label else "gray",
            vmin=0,
            vmax=0.5 if "error" in label else 1.2,
        )
        if lesions is not None and lesions[:, :, z].any():
            ax.contour(np.rot90(lesions[:, :, z] > 0), levels=[0.5], colors="cyan", linewidths=0.5)
        ax.set_title(label, fontsize=8)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)


def held_out_markdown(simulated: dict, label: str = "zero-shot") -> list[str]:
    """The held-out heads' table: ``label``'s and the other site's table's psnr_optimal, and lesion contrasts."""
    lines = [
        "**Simulated held-out heads** (label maps 1-4), zero-shot against a lookup table fitted on another "
        "simulated site; lesion contrast: (lesion / white matter medians) - 1, true / zero-shot / table",
        "",
        "| case | zero-shot psnr_optimal | table psnr_optimal | difference | lesion contrast |",
        "|---|---|---|---|---|",
    ]
    for case, entry in simulated.items():
        zero, table = entry[label]["psnr_optimal"], entry["lookup table, another site"]["psnr_optimal"]
        contrast = entry["lesion contrast"]
        other = contrast["lookup table, another site"]
        lesions = "; ".join(
            f"{k} {contrast['true'][k]:.2f} / {contrast[label][k]:.2f} / {other[k]:.2f}" for k in contrast["true"]
        )
        lines.append(f"| {case} | {zero:.2f} | {table:.2f} | {zero - table:+.2f} | {lesions} |")
    return lines
