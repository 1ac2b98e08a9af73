"""Compare learned-segmenter weights before shipping them: `python -m benchmarks.compare_segmenters [FOLDER ...]`.

For each weights folder (`shipped` for the package's own; a folder written by `python -m
mrsynth.segmenter_training`), with and without the flip averaging of `mrsynth.segmenter.FLIPS`: Dice per class
and the mean of 8 on the held-out simulated heads of `benchmarks/masks.py` (the same maps, seeds and poses: maps
1-4, which the shipped recipe never trains on), and the ICBM head's brain-mask Dice.  Prints a table; saves
nothing (the shipped weights' figures belong to `python -m benchmarks masks`).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from benchmarks import masks as bench

HELD_OUT = 4


def _heads(count: int) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        return bench._simulated_heads(Path(tmp), count)


def _scores(folder: str, flips, heads: list[dict]) -> dict:
    import nibabel as nib

    from mrsynth import labels, segmenter

    model, _ = segmenter.load_model(None if folder == "shipped" else folder)
    dice = []
    for head in heads:
        subject = head["subject"]
        found = segmenter.segment(subject.t1, subject.affine, model, flips=flips)
        dice.append(labels.class_dice(subject.codes, subject.mask, segmenter.class_codes(found.classes), found.brain))
    icbm = nib.load(str(bench.SHARED / "icbm2009c/mni_icbm152_t1_tal_nlin_sym_09c.nii.gz"))
    reference = np.asarray(nib.load(str(bench.SHARED / "icbm2009c/mni_icbm152_t1_tal_nlin_sym_09c_mask.nii.gz"))
                           .dataobj) > 0
    brain = segmenter.segment(icbm.get_fdata().astype(np.float32), icbm.affine, model, flips=flips).brain
    means = {c: float(np.mean([d[c] for d in dice])) for c in labels.CLASSES}
    return {"classes": means, "mean": float(np.mean(list(means.values()))), "icbm": labels.dice(brain, reference)}


def main(argv=None) -> None:
    from mrsynth import labels, segmenter

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", default=["shipped"])
    folders = parser.parse_args(argv).folders
    heads = _heads(HELD_OUT)
    print("| weights | flips | " + " | ".join(labels.CLASSES) + " | mean of 8 | ICBM brain |")
    print("|---|---|" + "---|" * (len(labels.CLASSES) + 2))
    for folder in folders:
        for flips in (((),), segmenter.FLIPS):
            row = _scores(folder, flips, heads)
            print(f"| {folder} | {len(flips)} | " + " | ".join(f"{row['classes'][c]:.3f}" for c in labels.CLASSES)
                  + f" | {row['mean']:.3f} | {row['icbm']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
