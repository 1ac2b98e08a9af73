"""Automatic masks (`mrsynth masks`, `--masks auto`): Dice against reference labels, seconds per volume, effect on T2w prediction.

(a) Simulated whole heads, one per SynthSeg label map (MAPS of them), VOXEL_MM mm, each in a random pose (the
simulator's pose drawn with rotation SD 7.5 degrees per axis, shift SD 8 mm, scale SD 5 % per axis, plus its
smooth deformation), with its own protocol, bias and noise: Dice per class of the paper's eight (the label map
and the simulator's brain mask mapped by `mrsynth.labels`, against ours). `unknown` is everything outside the
seven tissue classes, background included, so its Dice says little; `vessel` has a few hundred voxels at most.
(b) The ICBM 2009c head (another site's template; our atlas is the HCP one): brain-mask Dice against its mask,
and, for scale, the Dice of the HCP atlas mask resampled to the ICBM grid by world coordinates alone (both are
MNI space: the two masks' definitions differ by that much). The HCP template is our atlas, so scoring on it
would be circular and it is not a row. (c) Seconds per volume (wall clock, this process alone).
(d) T2w prediction: the paper's FCN + 8 masks (`--preset fast`, EPOCHS epochs) trained with reference masks,
predicting with reference masks vs automatic masks, beside the FCN from the T1w alone trained the same way;
brain-masked MSE (reference brain mask, brain-median units) and psnr_p99; on simulated subjects (train on the
first two heads of (a), test on the next two) and across templates (train on HCP with `Avgwmparc`, test on ICBM
with `Avgwmparc` resampled by world coordinates as the reference masks); and, on the simulated subjects, the T1w-only
pipeline: the masked FCN trained on subjects prepared with `--masks auto` and predicting from automatic masks.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"
MAPS_DIR = SHARED / "synthseg-label-maps"
MAPS, EPOCHS, VOXEL_MM = 20, 4, 1.4
POSE = {"rotation_deg": 7.5, "shift_mm": 8.0, "scale_sd": 0.05}


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / max(float(a.sum() + b.sum()), 1.0)


def class_dice(reference_seg, reference_brain, seg, brain) -> dict[str, float]:
    from mrsynth import labels

    ref, _ = labels.tissue_bits(reference_seg, reference_brain)
    ours, _ = labels.tissue_bits(seg, brain)
    return {name: _dice(labels.has_class(ref, name), labels.has_class(ours, name)) for name in labels.CLASSES}


def _simulated_heads(root: Path) -> list[dict]:
    from mrsynth.masks import compute_masks
    from mrsynth.simulate.anatomy import label_map_anatomy, label_map_paths
    from mrsynth.simulate.dataset import write_hcp_subject
    from mrsynth.simulate.subject import Variation, simulate_subject

    heads = []
    for i, path in enumerate(label_map_paths(MAPS_DIR)[:MAPS], start=1):
        began = time.perf_counter()
        subject = simulate_subject(label_map_anatomy(path), seed=i, voxel_size=VOXEL_MM,
                                   variation=replace(Variation(), **POSE))
        print(f"{path.name}: simulated in {time.perf_counter() - began:.0f} s", flush=True)
        write_hcp_subject(subject, root, f"head{i:02d}")
        started = time.perf_counter()
        auto = compute_masks(subject.t1, subject.affine, source=path.name)
        seconds = time.perf_counter() - started
        heads.append({"id": f"head{i:02d}", "map": path.name, "seconds": seconds, "shape": list(subject.t1.shape),
                      "dice": class_dice(subject.codes, subject.mask, auto.seg, auto.brain),
                      "fit": auto.provenance["registration_fit"], "attempts": auto.provenance["registration_attempts"],
                      "auto": auto, "affine": subject.affine})
        print(f"{path.name}: {seconds:.0f} s, " + ", ".join(f"{k} {v:.3f}" for k, v in heads[-1]["dice"].items()),
              flush=True)
    return heads


def _train(cache: Path, train: str, test: str, channels: int, out: Path):
    from mrsynth import runs
    from mrsynth.config import load_config
    from mrsynth.modelfile import load_model
    from mrsynth.train import train as train_run

    config = load_config(None, [f"data.cache={cache}", f"data.train={train}", f"data.test={test}",
                                f"data.channels={channels}", f"optim.epochs={EPOCHS}", "data.max_eval_patches=256"],
                         presets=["fast"])
    train_run(config, out, progress=False)
    return load_model(out / runs.MODEL)


def _prediction_effect(cache: Path, train: str, tests: dict[str, dict], folder: Path) -> dict:
    """Scores per test subject: masked FCN with reference / automatic masks, T1w-only FCN."""
    from mrsynth.cache import list_prepared
    from mrsynth.evaluate import Reference, score
    from mrsynth.predict import predict_arrays

    subjects = {s.id: s for s in list_prepared(cache)}
    test_ids = ",".join(tests)
    masked = _train(cache, train, test_ids, 9, folder / "masked")
    plain = _train(cache, train, test_ids, 1, folder / "t1w-only")
    rows = {}
    for subject_id, auto in tests.items():
        volumes = subjects[subject_id].native()
        reference = Reference.from_prepared(subjects[subject_id])
        seg = auto["reference_seg"]
        predictions = {
            "FCN + masks, reference masks": predict_arrays(*masked, volumes.t1, volumes.affine, seg, volumes.brain),
            "FCN + masks, automatic masks": predict_arrays(*masked, volumes.t1, volumes.affine, auto["seg"],
                                                           auto["brain"]),
            "FCN, T1w only": predict_arrays(*plain, volumes.t1, volumes.affine, None, volumes.brain),
        }
        rows[subject_id] = {name: {k: score(v, reference)[k] for k in ("mse", "psnr_p99")}
                            for name, v in predictions.items()}
    return rows


def _auto_trained(auto_cache: Path, reference_cache: Path, train: str, tests: list[str], folder: Path) -> dict:
    """The T1w-only pipeline: the masked FCN trained on subjects prepared with ``--masks auto``, predicting from the
    test subjects' automatic masks; scored against the reference cache (reference brain mask)."""
    from mrsynth.cache import list_prepared
    from mrsynth.evaluate import Reference, score
    from mrsynth.predict import predict_prepared

    model, info = _train(auto_cache, train, ",".join(tests), 9, folder / "masked-auto")
    auto = {s.id: s for s in list_prepared(auto_cache)}
    reference = {s.id: s for s in list_prepared(reference_cache)}
    return {i: {k: score(predict_prepared(model, info, auto[i]), Reference.from_prepared(reference[i]))[k]
                for k in ("mse", "psnr_p99")} for i in tests}


def run() -> dict:
    import nibabel as nib
    from nibabel.processing import resample_from_to

    from mrsynth.cache import prepare_all
    from mrsynth.masks import compute_masks, provenance
    from mrsynth.subjects import discover

    if not MAPS_DIR.exists() or not (SHARED / "icbm2009c").exists():
        raise SystemExit(f"skipped: {SHARED} lacks the label maps or the templates")
    results = {"maps": MAPS, "voxel_mm": VOXEL_MM, "pose": POSE, "epochs": EPOCHS, "method": provenance()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        heads = _simulated_heads(tmp / "heads")
        results["simulated"] = [{k: h[k] for k in ("id", "map", "seconds", "shape", "dice", "fit", "attempts")}
                                for h in heads]
        # (b) the ICBM head
        icbm_t1 = nib.load(str(SHARED / "icbm2009c/mni_icbm152_t1_tal_nlin_sym_09c.nii.gz"))
        icbm_mask = np.asarray(nib.load(str(SHARED / "icbm2009c/mni_icbm152_t1_tal_nlin_sym_09c_mask.nii.gz")).dataobj) > 0
        started = time.perf_counter()
        icbm_auto = compute_masks(icbm_t1.get_fdata().astype(np.float32), icbm_t1.affine, source="icbm")
        hcp_mask = nib.load(str(SHARED / "hcp-mni152/MNI152_T1_1mm_brain_mask.nii.gz"))
        world = resample_from_to(hcp_mask, icbm_t1, order=0).get_fdata() > 0.5
        results["icbm"] = {"seconds": time.perf_counter() - started, "shape": list(icbm_t1.shape),
                           "brain_dice": _dice(icbm_auto.brain, icbm_mask),
                           "atlas_mask_by_world_coordinates_dice": _dice(world, icbm_mask),
                           "fit": icbm_auto.provenance["registration_fit"],
                           "attempts": icbm_auto.provenance["registration_attempts"]}
        print("icbm", results["icbm"], flush=True)
        # (d) simulated: train on heads 1-2 (reference masks), test heads 3-4
        prepare_all(discover(tmp / "heads"), tmp / "cache", progress=False)
        tests = {h["id"]: {"seg": h["auto"].seg, "brain": h["auto"].brain,
                           "reference_seg": np.asarray(nib.load(str(tmp / "heads" / h["id"] / "T1w" / "wmparc.nii.gz")).dataobj)}
                 for h in heads[2:4]}
        results["prediction_simulated"] = _prediction_effect(tmp / "cache", "head01,head02", tests, tmp / "sim-runs")
        four = [s for s in discover(tmp / "heads") if s.id in ("head01", "head02", *tests)]
        prepare_all(four, tmp / "cache-auto", progress=False, masks="auto")
        results["prediction_simulated_auto_trained"] = _auto_trained(tmp / "cache-auto", tmp / "cache", "head01,head02",
                                                                     list(tests), tmp / "sim-runs")
        # (d) across templates: HCP -> ICBM
        from benchmarks.real_quality import _write_pair

        _write_pair(tmp / "pair")
        prepare_all(discover(tmp / "pair"), tmp / "pair-cache", progress=False)
        icbm_seg = np.asarray(nib.load(str(tmp / "pair" / "icbm" / "T1w" / "wmparc.nii.gz")).dataobj)
        results["prediction_templates"] = _prediction_effect(
            tmp / "pair-cache", "hcp", {"icbm": {"seg": icbm_auto.seg, "brain": icbm_auto.brain,
                                                "reference_seg": icbm_seg}}, tmp / "pair-runs")
    return results


def markdown(result: dict) -> str:
    from mrsynth.labels import CLASSES

    sims = result["simulated"]
    method = result["method"]
    lines = [f"Method {method['method']} version {method['version']}. Simulated heads at {result['voxel_mm']} mm "
             "(fit: correlation of the warped template with the T1w inside the warped brain; tries: registrations "
             "run, another one whenever the fit was below the threshold):", "",
             "| simulated head | seconds | fit | tries | " + " | ".join(CLASSES) + " | mean of 8 |",
             "|---|---|---|---|" + "---|" * (len(CLASSES) + 1)]
    for head in sims:
        d = head["dice"]
        fit = f"{head['fit']:.2f} | {head['attempts']}" if "fit" in head else "- | 1"
        lines.append(f"| {head['id']} ({head['map']}) | {head['seconds']:.0f} | {fit} | " + " | ".join(
            f"{d[c]:.3f}" for c in CLASSES) + f" | {np.mean(list(d.values())):.3f} |")
    means = {c: float(np.mean([h["dice"][c] for h in sims])) for c in CLASSES}
    lines.append(f"| **mean of {len(sims)}** | {np.median([h['seconds'] for h in sims]):.0f} (median) | | | " + " | ".join(
        f"**{means[c]:.3f}**" for c in CLASSES) + f" | **{np.mean(list(means.values())):.3f}** |")
    icbm = result["icbm"]
    lines += ["", f"ICBM 2009c head ({'x'.join(map(str, icbm['shape']))}, 1 mm): brain-mask Dice "
                  f"{icbm['brain_dice']:.3f} against its own mask, in {icbm['seconds']:.0f} s; the HCP atlas mask "
                  f"placed by world coordinates alone scores {icbm['atlas_mask_by_world_coordinates_dice']:.3f} "
                  "(the two templates' mask definitions differ)"
                  + (f"; fit {icbm['fit']:.2f} after {icbm['attempts']} registration(s)." if "fit" in icbm else "."), "",
              "| T2w prediction (brain MSE, brain-median units / psnr_p99) | " + " | ".join(
                  ["FCN + masks, reference masks", "FCN + masks, automatic masks", "FCN, T1w only",
                   "FCN + masks trained and tested on automatic masks"]) + " | auto / reference MSE | "
              "auto-trained / reference MSE |",
              "|---|---|---|---|---|---|---|"]
    auto_trained = result.get("prediction_simulated_auto_trained", {})
    for group in ("prediction_simulated", "prediction_templates"):
        for subject, rows in result[group].items():
            cells = [f"{rows[n]['mse']:.4f} / {rows[n]['psnr_p99']:.2f}" for n in rows]
            reference = rows["FCN + masks, reference masks"]["mse"]
            ratio = rows["FCN + masks, automatic masks"]["mse"] / reference
            both = auto_trained.get(subject) if group == "prediction_simulated" else None
            cells.append(f"{both['mse']:.4f} / {both['psnr_p99']:.2f}" if both else "-")
            label = "HCP -> ICBM" if group == "prediction_templates" else f"simulated {subject}"
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {ratio:.2f} | "
                         + (f"{both['mse'] / reference:.2f} |" if both else "- |"))
    lines += ["", "Trained and tested on automatic masks: the T1w-only pipeline (`prepare --masks auto`, then "
              "`predict --masks auto`); not across templates, where the HCP template is the atlas itself."]
    if result.get("note"):
        lines += ["", result["note"]]
    return "\n".join(lines)
