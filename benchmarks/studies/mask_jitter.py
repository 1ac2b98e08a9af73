"""Mask jitter (`augment.mask_jitter`): the masked FCN trained with its tissue masks randomly displaced, predicting
with reference vs learned masks, over several training seeds.

The masks benchmark's T2w set-up (the paper's FCN + 8 masks, `--preset fast`, `masks.EPOCHS` epochs, trained with
reference masks): on simulated subjects (train on heads 1-2 of `masks`, test on heads 3-4) and across
templates (train on HCP, test on ICBM with `Avgwmparc` resampled by world coordinates as its reference masks), each
trained with `augment.mask_jitter` 0 (off: the masks benchmark's model) and 2 pixels (JITTERS), under 3 training
seeds (SEEDS). Each test subject is predicted with its reference masks and with the learned method's masks; brain-masked
MSE (reference brain mask, brain-median units). The spread over seeds says how far one seed's figure can be trusted.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from benchmarks.fixtures import (
    FCN_EPOCHS,
    FCN_SEEDS,
    reference_seg,
    require_shared,
    simulated_heads,
    train_masks_fcn,
    write_template_pair,
)

JITTERS, SEEDS = (0.0, 2.0), FCN_SEEDS


def _scores(cache: Path, train: str, tests: dict, folder: Path) -> dict:
    """``{test id: {jitter: [{"reference": mse, "learned": mse} per seed]}}``."""
    from mrsynth.data import list_prepared
    from mrsynth.evaluation import Reference, score
    from mrsynth.inference import predict_arrays

    subjects = {s.id: s for s in list_prepared(cache)}
    out = {subject_id: {str(j): [] for j in JITTERS} for subject_id in tests}
    for jitter in JITTERS:
        for seed in SEEDS:
            model = train_masks_fcn(
                cache,
                train,
                ",".join(tests),
                9,
                folder / f"jitter{jitter}-seed{seed}",
                (f"augment.mask_jitter={jitter}", f"seed={seed}"),
            )
            for subject_id, test in tests.items():
                volumes = subjects[subject_id].native()
                reference = Reference.from_prepared(subjects[subject_id])
                row = {
                    name: score(predict_arrays(*model, volumes.t1, volumes.affine, seg, brain), reference)["mse"]
                    for name, (seg, brain) in (
                        ("reference", (test["reference_seg"], volumes.brain)),
                        ("learned", (test["auto"].seg, test["auto"].brain)),
                    )
                }
                out[subject_id][str(jitter)].append(row)
                print(f"jitter {jitter} seed {seed} {subject_id}: {row}", flush=True)
    return out


def run() -> dict:
    import nibabel as nib

    from mrsynth.data import prepare_all
    from mrsynth.io import discover
    from mrsynth.masks import compute_masks
    from mrsynth.masks.segmenter import METHOD as LEARNED

    require_shared("synthseg-label-maps", "icbm2009c", "hcp-mni152")
    results = {"jitters": list(JITTERS), "seeds": list(SEEDS), "epochs": FCN_EPOCHS}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        heads = simulated_heads(tmp / "heads", count=4)
        prepare_all(discover(tmp / "heads"), tmp / "cache", progress=False)
        tests = {
            h["id"]: {
                "auto": compute_masks(h["subject"].t1, h["subject"].affine, method=LEARNED),
                "reference_seg": reference_seg(tmp / "heads" / h["id"]),
            }
            for h in heads[2:4]
        }
        results["simulated"] = _scores(tmp / "cache", "head01,head02", tests, tmp / "sim-runs")
        write_template_pair(tmp / "pair")
        prepare_all(discover(tmp / "pair"), tmp / "pair-cache", progress=False)
        icbm = nib.load(str(tmp / "pair" / "icbm" / "T1w" / "T1w_acpc_dc.nii.gz"))
        tests = {
            "icbm": {
                "auto": compute_masks(np.asarray(icbm.dataobj, np.float32), icbm.affine, method=LEARNED),
                "reference_seg": reference_seg(tmp / "pair" / "icbm"),
            }
        }
        results["templates"] = _scores(tmp / "pair-cache", "hcp", tests, tmp / "pair-runs")
    return results


def _median(rows: list[dict], key: str) -> float:
    return float(np.median([r[key] for r in rows]))


def _median_ratio(rows: list[dict]) -> float:
    return float(np.median([r["learned"] / r["reference"] for r in rows]))


def markdown(result: dict) -> str:
    seeds = result["seeds"]
    lines = [
        "| test subject | mask_jitter | "
        + " | ".join(f"seed {s}: reference / learned MSE" for s in seeds)
        + " | median reference | median learned | median learned / reference |",
        "|---|---|" + "---|" * (len(seeds) + 3),
    ]
    changes = []
    for group, label in (("simulated", "simulated {}"), ("templates", "HCP -> ICBM")):
        for subject, by_jitter in result[group].items():
            name = label.format(subject)
            for jitter, rows in by_jitter.items():
                lines.append(
                    f"| {name} | {float(jitter):g} | "
                    + " | ".join(f"{r['reference']:.4f} / {r['learned']:.4f}" for r in rows)
                    + f" | {_median(rows, 'reference'):.4f} | {_median(rows, 'learned'):.4f} | "
                    f"{_median_ratio(rows):.2f} |"
                )
            off, on = by_jitter[str(result["jitters"][0])], by_jitter[str(result["jitters"][-1])]
            changes.append(f"{name} {100 * (_median(on, 'learned') / _median(off, 'learned') - 1):+.0f} %")
    lines += [
        "",
        f"Median MSE with learned masks, mask_jitter {result['jitters'][-1]:g} against 0: " + ", ".join(changes) + ".",
    ]
    return "\n".join(lines)
