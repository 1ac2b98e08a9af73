"""Automatic masks (`mrsynth masks`, `--masks auto`), both methods: Dice against reference labels, seconds per volume,
effect on T2w prediction.

Methods: `ants-atlas` (registration of the HCP template) and `learned` (the shipped segmenter, trained on images
simulated from SynthSeg label maps; the maps it was trained on are listed in its `model.json` and its rows
for them are marked: only the other maps are held out).
(a) Simulated whole heads, one per SynthSeg label map (MAPS of them), VOXEL_MM mm, each in a random pose (the
simulator's pose drawn with rotation SD 7.5 degrees per axis, shift SD 8 mm, scale SD 5 % per axis, plus its
smooth deformation), with its own protocol, bias and noise: Dice per class of the paper's eight (the label map
and the simulator's brain mask mapped by `mrsynth.labels`, against ours; that brain mask follows HCP's
`brainmask_fs` rule, `mrsynth.labels.hcp_brain_mask`, as the learned method's does). `unknown` is everything outside the
seven tissue classes, background included, so its Dice says little; `vessel` has a few dozen to a few hundred
voxels. (b) The ICBM 2009c head (another site's template; neither method saw it): brain-mask Dice against its
mask, and, for scale, the Dice of the HCP atlas mask resampled to the ICBM grid by world coordinates alone (both
are MNI space: the two masks' definitions differ by that much). The skull-stripped HCP template against
`Avgwmparc` for the learned method only (it is the atlas method's own atlas). (c) Seconds per volume (wall
clock, this process alone). (d) T2w prediction: the paper's FCN + 8 masks (`--preset fast`, EPOCHS epochs)
trained with reference masks, predicting with reference masks vs each method's automatic masks, beside the FCN
from the T1w alone trained the same way; brain-masked MSE (reference brain mask, brain-median units) and
psnr_p99; on simulated subjects (train on the first two heads of (a), test on the next two) and across templates
(train on HCP with `Avgwmparc`, test on ICBM with `Avgwmparc` resampled by world coordinates as the reference
masks); and, on the simulated subjects, the T1w-only pipeline: the masked FCN trained on subjects prepared with
each method's automatic masks and predicting from them.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.fixtures import (
    FCN_EPOCHS,
    HEAD_POSE,
    HEAD_VOXEL_MM,
    HEADS,
    SHARED,
    reference_seg,
    require_shared,
    simulated_heads,
    train_masks_fcn,
    write_template_pair,
)

MAPS, EPOCHS, VOXEL_MM, POSE = HEADS, FCN_EPOCHS, HEAD_VOXEL_MM, HEAD_POSE


def trained_on_maps() -> list[int]:
    """The label maps (1-based) the shipped segmenter was trained on: the others are held out."""
    from mrsynth.networks import SEGMENTER, read_description

    return list(read_description(SEGMENTER).training["pretraining"]["training"]["maps"])


def _timed_masks(t1, affine, source, method: str):
    from mrsynth.masks import compute_masks

    started = time.perf_counter()
    auto = compute_masks(t1, affine, source=source, method=method)
    return auto, time.perf_counter() - started


def _head_rows(heads: list[dict], method: str) -> tuple[list[dict], dict]:
    """Dice per class of one method's masks on every simulated head, and the masks themselves by head id."""
    from mrsynth.labels import class_dice
    from mrsynth.masks.segmenter import METHOD as LEARNED

    seen = set(trained_on_maps()) if method == LEARNED else set()
    rows, found = [], {}
    for head in heads:
        subject = head["subject"]
        auto, seconds = _timed_masks(subject.t1, subject.affine, head["map"], method)
        row = {
            "id": head["id"],
            "map": head["map"],
            "seconds": seconds,
            "shape": list(subject.t1.shape),
            "dice": class_dice(subject.codes, subject.mask, auto.seg, auto.brain),
            "held_out": head["index"] not in seen,
        }
        if "registration_fit" in auto.provenance:
            row |= {"fit": auto.provenance["registration_fit"], "attempts": auto.provenance["registration_attempts"]}
        rows.append(row)
        found[head["id"]] = auto
        print(
            f"{method} {head['map']}: {seconds:.0f} s, " + ", ".join(f"{k} {v:.3f}" for k, v in row["dice"].items()),
            flush=True,
        )
    return rows, found


def _icbm(method: str) -> tuple[dict, object]:
    import nibabel as nib
    from nibabel.processing import resample_from_to

    from mrsynth.labels import dice

    icbm_t1 = nib.load(str(SHARED / "icbm2009c/mni_icbm152_t1_tal_nlin_sym_09c.nii.gz"))
    icbm_mask = np.asarray(nib.load(str(SHARED / "icbm2009c/mni_icbm152_t1_tal_nlin_sym_09c_mask.nii.gz")).dataobj) > 0
    auto, seconds = _timed_masks(icbm_t1.get_fdata().astype(np.float32), icbm_t1.affine, "icbm", method)
    hcp_mask = nib.load(str(SHARED / "hcp-mni152/MNI152_T1_1mm_brain_mask.nii.gz"))
    world = resample_from_to(hcp_mask, icbm_t1, order=0).get_fdata() > 0.5
    row = {
        "seconds": seconds,
        "shape": list(icbm_t1.shape),
        "brain_dice": dice(auto.brain, icbm_mask),
        "atlas_mask_by_world_coordinates_dice": dice(world, icbm_mask),
    }
    if "registration_fit" in auto.provenance:
        row |= {"fit": auto.provenance["registration_fit"], "attempts": auto.provenance["registration_attempts"]}
    print(method, "icbm", row, flush=True)
    return row, auto


def _hcp_template(method: str) -> dict:
    """The skull-stripped HCP template's masks against its brain mask and ``Avgwmparc``."""
    import nibabel as nib

    from mrsynth.labels import class_dice

    folder = SHARED / "hcp-mni152"
    t1 = nib.load(str(folder / "MNI152_T1_1mm_brain.nii.gz"))
    brain = np.asarray(nib.load(str(folder / "MNI152_T1_1mm_brain_mask.nii.gz")).dataobj) > 0
    avg = nib.load(str(folder / "Avgwmparc.nii.gz"))
    codes = np.rint(np.asarray(avg.dataobj).reshape(avg.shape[:3])).astype(np.int32)
    auto, seconds = _timed_masks(t1.get_fdata().astype(np.float32), t1.affine, "hcp", method)
    row = {"seconds": seconds, "dice": class_dice(codes, brain, auto.seg, auto.brain)}
    print(method, "hcp", row, flush=True)
    return row


REFERENCE, T1W_ONLY = "FCN + masks, reference masks", "FCN, T1w only"


def automatic_column(method: str) -> str:
    return f"FCN + masks, {method} masks"


def _prediction_effect(cache: Path, train: str, tests: dict[str, dict], folder: Path) -> dict:
    """Scores per test subject: masked FCN with reference masks and with each method's automatic masks
    (``tests[id]["auto"][method]``), T1w-only FCN."""
    from mrsynth.data import list_prepared
    from mrsynth.evaluation import Reference, score
    from mrsynth.inference import predict_arrays

    subjects = {s.id: s for s in list_prepared(cache)}
    test_ids = ",".join(tests)
    masked = train_masks_fcn(cache, train, test_ids, 9, folder / "masked")
    plain = train_masks_fcn(cache, train, test_ids, 1, folder / "t1w-only")
    rows = {}
    for subject_id, test in tests.items():
        volumes = subjects[subject_id].native()
        reference = Reference.from_prepared(subjects[subject_id])
        predictions = {
            REFERENCE: predict_arrays(*masked, volumes.t1, volumes.affine, test["reference_seg"], volumes.brain)
        }
        for method, auto in test["auto"].items():
            predictions[automatic_column(method)] = predict_arrays(
                *masked, volumes.t1, volumes.affine, auto.seg, auto.brain
            )
        predictions[T1W_ONLY] = predict_arrays(*plain, volumes.t1, volumes.affine, None, volumes.brain)
        rows[subject_id] = {
            name: {k: score(v, reference)[k] for k in ("mse", "psnr_p99")} for name, v in predictions.items()
        }
    return rows


def _auto_trained(auto_cache: Path, reference_cache: Path, train: str, tests: list[str], folder: Path) -> dict:
    """The T1w-only pipeline: the masked FCN trained on subjects prepared with automatic masks, predicting from the
    test subjects' automatic masks; scored against the reference cache (reference brain mask)."""
    from mrsynth.data import list_prepared
    from mrsynth.evaluation import Reference, score
    from mrsynth.inference import predict_prepared

    model, info = train_masks_fcn(auto_cache, train, ",".join(tests), 9, folder)
    auto = {s.id: s for s in list_prepared(auto_cache)}
    reference = {s.id: s for s in list_prepared(reference_cache)}
    return {
        i: {
            k: score(predict_prepared(model, info, auto[i]), Reference.from_prepared(reference[i]))[k]
            for k in ("mse", "psnr_p99")
        }
        for i in tests
    }


def run(methods=None) -> dict:
    from mrsynth.data import prepare_all
    from mrsynth.io import discover
    from mrsynth.masks import MASK_METHODS
    from mrsynth.masks.atlas import provenance
    from mrsynth.masks.segmenter import METHOD as LEARNED
    from mrsynth.masks.segmenter import version
    from mrsynth.networks import SEGMENTER, read_description

    require_shared("synthseg-label-maps", "icbm2009c", "hcp-mni152")
    methods = tuple(methods or MASK_METHODS)
    description = read_description(SEGMENTER)
    results = {"maps": MAPS, "voxel_mm": VOXEL_MM, "pose": POSE, "epochs": EPOCHS, "methods": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        heads = simulated_heads(tmp / "heads")
        found, icbm_found = {}, {}
        for method in methods:
            rows, found[method] = _head_rows(heads, method)
            icbm, icbm_found[method] = _icbm(method)
            record = {
                "provenance": provenance()
                if method != LEARNED
                else {
                    "method": LEARNED,
                    "version": version(description),
                    "trained_on_maps": trained_on_maps(),
                },
                "simulated": rows,
                "icbm": icbm,
            }
            if method == LEARNED:
                record["hcp"] = _hcp_template(method)
            results["methods"][method] = record
        # (d) simulated: train on heads 1-2 (reference masks), test heads 3-4
        prepare_all(discover(tmp / "heads"), tmp / "cache", progress=False)
        tests = {
            h["id"]: {
                "auto": {m: found[m][h["id"]] for m in methods},
                "reference_seg": reference_seg(tmp / "heads" / h["id"]),
            }
            for h in heads[2:4]
        }
        results["prediction_simulated"] = _prediction_effect(tmp / "cache", "head01,head02", tests, tmp / "sim-runs")
        four = [s for s in discover(tmp / "heads") if s.id in ("head01", "head02", *tests)]
        results["prediction_simulated_auto_trained"] = {}
        for method in methods:
            prepare_all(four, tmp / f"cache-{method}", progress=False, masks=method)
            results["prediction_simulated_auto_trained"][method] = _auto_trained(
                tmp / f"cache-{method}", tmp / "cache", "head01,head02", list(tests), tmp / "sim-runs" / method
            )
        # (d) across templates: HCP -> ICBM
        write_template_pair(tmp / "pair")
        prepare_all(discover(tmp / "pair"), tmp / "pair-cache", progress=False)
        icbm_seg = reference_seg(tmp / "pair" / "icbm")
        results["prediction_templates"] = _prediction_effect(
            tmp / "pair-cache", "hcp", {"icbm": {"auto": icbm_found, "reference_seg": icbm_seg}}, tmp / "pair-runs"
        )
    return results


def _dice_cells(dice: dict) -> str:
    from mrsynth.labels import CLASSES

    return " | ".join(f"{dice[c]:.3f}" for c in CLASSES) + f" | {np.mean([dice[c] for c in CLASSES]):.3f}"


def _mean_row(label: str, rows: list[dict]) -> str:
    from mrsynth.labels import CLASSES

    means = {c: float(np.mean([r["dice"][c] for r in rows])) for c in CLASSES}
    return (
        f"| **{label}** | {np.median([r['seconds'] for r in rows]):.0f} (median) | | | "
        + " | ".join(f"**{means[c]:.3f}**" for c in CLASSES)
        + f" | **{np.mean(list(means.values())):.3f}** |"
    )


def _method_section(method: str, record: dict, voxel_mm: float) -> list[str]:
    from mrsynth.labels import CLASSES

    rows = record["simulated"]
    provenance = record["provenance"]
    lines = [
        f"### {method} (version {provenance['version']})",
        "",
        f"Simulated heads at {voxel_mm} mm"
        + (
            " (fit: correlation of the warped template with the T1w inside the warped brain; tries: "
            "registrations run, another one whenever the fit was below the threshold)"
            if "fit" in rows[0]
            else f" (trained on maps {', '.join(map(str, provenance.get('trained_on_maps', [])))}: their rows are "
            "marked 'seen', the others are held out)"
        )
        + ":",
        "",
        "| simulated head | seconds | fit | tries | " + " | ".join(CLASSES) + " | mean of 8 |",
        "|---|---|---|---|" + "---|" * (len(CLASSES) + 1),
    ]
    for row in rows:
        fit = f"{row['fit']:.2f} | {row['attempts']}" if "fit" in row else "- | -"
        seen = "" if row.get("held_out", True) else ", seen"
        lines.append(
            f"| {row['id']} ({row['map']}{seen}) | {row['seconds']:.0f} | {fit} | {_dice_cells(row['dice'])} |"
        )
    held_out = [r for r in rows if r.get("held_out", True)]
    lines.append(
        _mean_row(
            f"mean of {len(held_out)} held out" if len(held_out) < len(rows) else f"mean of {len(rows)}", held_out
        )
    )
    if len(held_out) < len(rows):
        lines.append(_mean_row(f"mean of {len(rows) - len(held_out)} seen", [r for r in rows if not r["held_out"]]))
    icbm = record["icbm"]
    lines += [
        "",
        f"ICBM 2009c head ({'x'.join(map(str, icbm['shape']))}, 1 mm): brain-mask Dice "
        f"{icbm['brain_dice']:.3f} against its own mask, in {icbm['seconds']:.0f} s; the HCP atlas mask "
        f"placed by world coordinates alone scores {icbm['atlas_mask_by_world_coordinates_dice']:.3f} "
        "(the two templates' mask definitions differ)"
        + (f"; fit {icbm['fit']:.2f} after {icbm['attempts']} registration(s)." if "fit" in icbm else "."),
    ]
    if "hcp" in record:
        hcp = record["hcp"]
        lines += [
            "",
            f"Skull-stripped HCP template against its brain mask and `Avgwmparc` ({hcp['seconds']:.0f} s): "
            + ", ".join(f"{c} {hcp['dice'][c]:.3f}" for c in CLASSES)
            + f"; mean of 8 {np.mean([hcp['dice'][c] for c in CLASSES]):.3f}.",
        ]
    return lines + [""]


def markdown(result: dict) -> str:
    methods = result["methods"]
    lines = []
    for method, record in methods.items():
        lines += _method_section(method, record, result["voxel_mm"])
    columns = [REFERENCE] + [automatic_column(m) for m in methods] + [T1W_ONLY]
    auto_trained = result.get("prediction_simulated_auto_trained", {})
    lines += [
        "### Effect on T2w prediction",
        "",
        "| T2w prediction (brain MSE, brain-median units / psnr_p99) | "
        + " | ".join(columns)
        + " | "
        + " | ".join(f"trained and tested on {m} masks" for m in methods)
        + " | "
        + " | ".join(f"{m} / reference MSE" for m in methods)
        + " | "
        + " | ".join(f"{m}-trained / reference MSE" for m in methods)
        + " |",
        "|---|" + "---|" * (len(columns) + 3 * len(methods)),
    ]
    for group in ("prediction_simulated", "prediction_templates"):
        for subject, rows in result[group].items():
            reference = rows[REFERENCE]["mse"]
            cells = [f"{rows[c]['mse']:.4f} / {rows[c]['psnr_p99']:.2f}" for c in columns]
            trained = [
                auto_trained.get(m, {}).get(subject) if group == "prediction_simulated" else None for m in methods
            ]
            cells += [f"{t['mse']:.4f} / {t['psnr_p99']:.2f}" if t else "-" for t in trained]
            cells += [f"{rows[automatic_column(m)]['mse'] / reference:.2f}" for m in methods]
            cells += [f"{t['mse'] / reference:.2f}" if t else "-" for t in trained]
            label = "HCP -> ICBM" if group == "prediction_templates" else f"simulated {subject}"
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Trained and tested on automatic masks: the T1w-only pipeline (`prepare --masks M`, then "
        "`predict --masks M`); not across templates, where the HCP template is the atlas method's atlas.",
    ]
    if result.get("note"):
        lines += ["", result["note"]]
    return "\n".join(lines)
