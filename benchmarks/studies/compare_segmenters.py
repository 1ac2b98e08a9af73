"""Learned-segmenter weights compared before shipping them: the shipped ones and the candidates in
`$MRSYNTH_SEGMENTERS` (model folders, comma-separated, e.g. the `model/` of `mrsynth pretrain --recipe segmenter`).

For each weights folder, with and without the flip averaging of its input contract: Dice per class and the mean of 8
on the held-out simulated heads of the `masks` study (the same maps, seeds and poses: maps 1-4, which the shipped
recipe never trains on), and the ICBM head's brain-mask Dice.  With `MRSYNTH_SEGMENTER_PREDICTION=1`, also what
issue 13 asks of the masks: the masks study's masked FCN trained with reference masks under its seeds (on heads 1-2,
and on the HCP template), predicting heads 3-4 (and ICBM) with each folder's masks (flip-averaged) against with the
reference masks: brain-masked MSE learned / reference, per seed and the median (the FCNs are kept under
`benchmarks/work/compare_segmenters/` and reused: they do not depend on the segmenter).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.fixtures import (
    FCN_SEEDS,
    HERE,
    ICBM,
    SHARED,
    reference_seg,
    require_shared,
    simulated_heads,
    train_masks_fcn,
    write_template_pair,
)

HELD_OUT = 4
SHIPPED = "shipped"
WORK = HERE / "work" / "compare_segmenters"


def _scores(folder: str, flips, heads: list[dict]) -> dict:
    """Dice on the heads and the ICBM brain, and the (codes, brain) found for each head id and ``icbm``."""
    import nibabel as nib

    from mrsynth import labels
    from mrsynth.masks import segmenter
    from mrsynth.networks import SEGMENTER, load_model

    loaded = load_model(SEGMENTER if folder == SHIPPED else folder)
    dice, found = [], {}
    for head in heads:
        subject = head["subject"]
        result = segmenter.segment(subject.t1, subject.affine, loaded, flips=flips)
        found[head["id"]] = (segmenter.class_codes(result.classes), result.brain)
        dice.append(labels.class_dice(subject.codes, subject.mask, *found[head["id"]]))
    icbm = nib.load(str(SHARED / ICBM["t1"]))
    reference = np.asarray(nib.load(str(SHARED / ICBM["mask"])).dataobj) > 0
    result = segmenter.segment(icbm.get_fdata().astype(np.float32), icbm.affine, loaded, flips=flips)
    found["icbm"] = (segmenter.class_codes(result.classes), result.brain)
    means = {c: float(np.mean([d[c] for d in dice])) for c in labels.CLASSES}
    return {
        "classes": means,
        "mean": float(np.mean(list(means.values()))),
        "icbm": labels.dice(result.brain, reference),
        "found": found,
    }


def _fcn(cache: Path, train: str, tests, seed: int, folder: Path):
    """The masks benchmark's masked FCN for one seed: loaded from ``folder`` if an earlier call trained it there
    (a run an earlier call left unfinished is started again)."""
    import shutil

    from mrsynth.networks import load_model
    from mrsynth.training import runs

    if (folder / runs.MODEL).exists():
        return load_model(folder / runs.MODEL)
    shutil.rmtree(folder, ignore_errors=True)
    return train_masks_fcn(cache, train, ",".join(tests), 9, folder, (f"seed={seed}",))


def _ratios(tmp: Path, work: Path, found: dict[str, dict]) -> dict[str, dict[str, list[float]]]:
    """``{folder: {test id: [learned / reference MSE per seed]}}`` for the masked FCN of the masks study."""
    from mrsynth.data import list_prepared, prepare_all
    from mrsynth.evaluation import Reference, score
    from mrsynth.inference import predict_arrays
    from mrsynth.io import discover

    write_template_pair(tmp / "pair")
    setups = (("cache", "heads", "head01,head02", ("head03", "head04")), ("pair-cache", "pair", "hcp", ("icbm",)))
    out = {folder: {} for folder in found}
    for cache, subjects_dir, train, tests in setups:
        prepare_all(discover(tmp / subjects_dir), tmp / cache, progress=False)
        subjects = {s.id: s for s in list_prepared(tmp / cache)}
        for seed in FCN_SEEDS:
            model = _fcn(tmp / cache, train, tests, seed, work / f"{train.replace(',', '-')}-seed{seed}")
            for test in tests:
                volumes, reference = subjects[test].native(), Reference.from_prepared(subjects[test])

                def mse(seg, brain, model=model, volumes=volumes, reference=reference):
                    return score(predict_arrays(*model, volumes.t1, volumes.affine, seg, brain), reference)["mse"]

                with_reference = mse(reference_seg(tmp / subjects_dir / test), volumes.brain)
                for folder, masks in found.items():
                    out[folder].setdefault(test, []).append(mse(*masks[test]) / with_reference)
                print(f"seed {seed} {test}: " + ", ".join(f"{f} {out[f][test][-1]:.3f}" for f in found), flush=True)
    return out


def run() -> dict:
    from mrsynth.masks import segmenter

    require_shared("synthseg-label-maps", "icbm2009c", "hcp-mni152")
    folders = [SHIPPED] + [f for f in os.environ.get("MRSYNTH_SEGMENTERS", "").split(",") if f]
    result = {"folders": folders, "dice": {}, "prediction": None}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        heads = simulated_heads(tmp / "heads", HELD_OUT)
        found = {}
        for folder in folders:
            for flips in (((),), segmenter.FLIPS):
                row = _scores(folder, flips, heads)
                result["dice"][f"{folder}, {len(flips)} flips"] = {k: v for k, v in row.items() if k != "found"}
            found[folder] = row["found"]  # the flip-averaged masks: what mrsynth masks writes
        if os.environ.get("MRSYNTH_SEGMENTER_PREDICTION") == "1":
            result["prediction"] = _ratios(tmp, WORK, found)
    return result


def markdown(result: dict) -> str:
    from mrsynth import labels

    lines = ["| weights, flips | " + " | ".join(labels.CLASSES) + " | mean of 8 | ICBM brain |"]
    lines.append("|---|" + "---|" * (len(labels.CLASSES) + 2))
    for name, row in result["dice"].items():
        cells = " | ".join(f"{row['classes'][c]:.3f}" for c in labels.CLASSES)
        lines.append(f"| {name} | {cells} | {row['mean']:.3f} | {row['icbm']:.3f} |")
    if result["prediction"]:
        tests = list(next(iter(result["prediction"].values())))
        lines += [
            "",
            "| weights | " + " | ".join(f"{t}: learned / reference MSE, per seed (median)" for t in tests) + " |",
        ]
        lines.append("|---|" + "---|" * len(tests))
        for folder, by_test in result["prediction"].items():
            cells = [" ".join(f"{r:.2f}" for r in by_test[t]) + f" ({np.median(by_test[t]):.2f})" for t in tests]
            lines.append(f"| {folder} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
