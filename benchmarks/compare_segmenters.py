"""Compare learned-segmenter weights before shipping them: `python -m benchmarks.compare_segmenters [FOLDER ...]
[--prediction]`.

For each weights folder (`shipped` for the package's own; a folder written by `python -m
mrsynth.masks.training`), with and without the flip averaging of `mrsynth.masks.segmenter.FLIPS`: Dice per class
and the mean of 8 on the held-out simulated heads of `benchmarks/masks.py` (the same maps, seeds and poses: maps
1-4, which the shipped recipe never trains on), and the ICBM head's brain-mask Dice.  With `--prediction`, also
what issue 13 asks of the masks: the masks benchmark's masked FCN trained with reference masks under
`mask_jitter.SEEDS` (on heads 1-2, and on the HCP template), predicting heads 3-4 (and ICBM) with each folder's
masks (flip-averaged) against with the reference masks: brain-masked MSE learned / reference, per seed and the
median; `--work DIR` keeps those FCNs there and reuses them on the next call (they do not depend on the segmenter).
Prints tables; saves nothing else (the shipped weights' figures belong to `python -m benchmarks masks`).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from benchmarks import masks as bench

HELD_OUT = 4
ICBM_T1 = bench.SHARED / "icbm2009c/mni_icbm152_t1_tal_nlin_sym_09c.nii.gz"


def _scores(folder: str, flips, heads: list[dict]) -> dict:
    """Dice on the heads and the ICBM brain, and the (codes, brain) found for each head id and ``icbm``."""
    import nibabel as nib

    from mrsynth import labels
    from mrsynth.masks import segmenter

    model, _ = segmenter.load_model(None if folder == "shipped" else folder)
    dice, found = [], {}
    for head in heads:
        subject = head["subject"]
        result = segmenter.segment(subject.t1, subject.affine, model, flips=flips)
        found[head["id"]] = (segmenter.class_codes(result.classes), result.brain)
        dice.append(labels.class_dice(subject.codes, subject.mask, *found[head["id"]]))
    icbm = nib.load(str(ICBM_T1))
    reference = (
        np.asarray(nib.load(str(bench.SHARED / "icbm2009c/mni_icbm152_t1_tal_nlin_sym_09c_mask.nii.gz")).dataobj) > 0
    )
    result = segmenter.segment(icbm.get_fdata().astype(np.float32), icbm.affine, model, flips=flips)
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

    from mrsynth.networks import modelfile
    from mrsynth.training import runs

    if (folder / runs.MODEL).exists():
        return modelfile.load_model(folder / runs.MODEL)
    shutil.rmtree(folder, ignore_errors=True)
    return bench._train(cache, train, ",".join(tests), 9, folder, (f"seed={seed}",))


def _ratios(tmp: Path, work: Path, found: dict[str, dict]) -> dict[str, dict[str, list[float]]]:
    """``{folder: {test id: [learned / reference MSE per seed]}}`` for the masked FCN of ``benchmarks.masks``."""
    from benchmarks.mask_jitter import SEEDS
    from benchmarks.real_quality import _write_pair
    from mrsynth.data import list_prepared, prepare_all
    from mrsynth.evaluation import Reference, score
    from mrsynth.inference import predict_arrays
    from mrsynth.io import discover

    _write_pair(tmp / "pair")
    setups = (("cache", "heads", "head01,head02", ("head03", "head04")), ("pair-cache", "pair", "hcp", ("icbm",)))
    out = {folder: {} for folder in found}
    for cache, subjects_dir, train, tests in setups:
        prepare_all(discover(tmp / subjects_dir), tmp / cache, progress=False)
        subjects = {s.id: s for s in list_prepared(tmp / cache)}
        for seed in SEEDS:
            model = _fcn(tmp / cache, train, tests, seed, work / f"{train.replace(',', '-')}-seed{seed}")
            for test in tests:
                volumes, reference = subjects[test].native(), Reference.from_prepared(subjects[test])

                def mse(seg, brain, model=model, volumes=volumes, reference=reference):
                    return score(predict_arrays(*model, volumes.t1, volumes.affine, seg, brain), reference)["mse"]

                with_reference = mse(bench.reference_seg(tmp / subjects_dir / test), volumes.brain)
                for folder, masks in found.items():
                    out[folder].setdefault(test, []).append(mse(*masks[test]) / with_reference)
                print(f"seed {seed} {test}: " + ", ".join(f"{f} {out[f][test][-1]:.3f}" for f in found), flush=True)
    return out


def main(argv=None) -> None:
    from mrsynth import labels
    from mrsynth.masks import segmenter

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", default=["shipped"])
    parser.add_argument("--prediction", action="store_true", help="also the T2w MSE with each folder's masks")
    parser.add_argument("--work", type=Path, help="keep the FCNs of --prediction here, to reuse (default: temporary)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        heads = bench._simulated_heads(tmp / "heads", HELD_OUT)
        print("| weights | flips | " + " | ".join(labels.CLASSES) + " | mean of 8 | ICBM brain |")
        print("|---|---|" + "---|" * (len(labels.CLASSES) + 2))
        found = {}
        for folder in args.folders:
            for flips in (((),), segmenter.FLIPS):
                row = _scores(folder, flips, heads)
                print(
                    f"| {folder} | {len(flips)} | "
                    + " | ".join(f"{row['classes'][c]:.3f}" for c in labels.CLASSES)
                    + f" | {row['mean']:.3f} | {row['icbm']:.3f} |",
                    flush=True,
                )
            found[folder] = row["found"]  # the flip-averaged masks: what mrsynth masks writes
        if args.prediction:
            ratios = _ratios(tmp, args.work or tmp / "fcn", found)
            tests = list(next(iter(ratios.values())))
            print(
                "\n| weights | " + " | ".join(f"{t}: learned / reference MSE, per seed (median)" for t in tests) + " |"
            )
            print("|---|" + "---|" * len(tests))
            for folder, by_test in ratios.items():
                print(
                    f"| {folder} | "
                    + " | ".join(
                        " ".join(f"{r:.2f}" for r in by_test[t]) + f" ({np.median(by_test[t]):.2f})" for t in tests
                    )
                    + " |"
                )


if __name__ == "__main__":
    main()
