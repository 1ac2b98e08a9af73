"""Real clinical scans decide: the two raw clinical MS pairs of `shared/data/open-ms-clinical` (whole heads, 0.9 x 0.9 x
3 mm 2D acquisitions, a site no other data comes from), each predicted by the whole T1w-only pipeline as a user runs
it: the brain mask and tissue classes computed from the T1W by the learned segmenter, the prediction on the T1W's
grid, scored against the T2W registered onto it (`*-T2W-in-T1W`, a 3.3 mm acquisition: blurrier than any
prediction) inside that mask.

Rows: the shipped model zero-shot; lookup tables (the library's `fit_table`) fitted on each template pair (other
sites); and, trained on one pair and tested on the other (both ways), `--preset finetune` (the shipped model
fine-tuned), `--preset quality` and the table fitted on the training pair.  Scores: `psnr_optimal` (the reference in
its brain 99th-percentile units, the prediction times its least-squares gain: scale-free), `psnr_p99`, SSIM and the
MSE per tissue class.  Beside them, the held-out simulated heads of `pretrained` (so that no change trades one for
the other).  One figure per case (benchmarks/results/real_scans/).  Skipped where ../shared/data is absent.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.fixtures import (
    HCP,
    ICBM,
    KEYS,
    SHARED,
    comparison_figure,
    figures_folder,
    held_out_heads,
    held_out_markdown,
    predicted,
    pretrained_weights,
    require_shared,
    scores,
    table_from,
    template_volumes,
)

FIGURES = "real_scans"
#: The pairs are CC-BY: every report and figure of them names their source (open-ms-clinical/LICENSE.md).
ATTRIBUTION = (
    "Data: the Longitudinal MR image database of Multiple Sclerosis patients of the Laboratory of Imaging "
    "Technologies, University of Ljubljana (CC-BY; Lesjak et al., Neuroinformatics 2016 and 2017), as mirrored in "
    "muschellij2/open_ms_data; each T2W rigidly registered onto its T1W "
    "(derived: shared/data/open-ms-clinical/LICENSE.md)."
)
#: The development pairs: case -> file prefix in open-ms-clinical/.
CASES = {"patient03": "patient03-study2", "patient04": "patient04-study1"}
ZERO_SHOT, FINETUNE, QUALITY = "pretrained, zero-shot", "--preset finetune", "--preset quality"


class Scan:
    """A development pair as the user has it: the T1W, its computed brain mask and classes, the reference T2W."""

    def __init__(self, prefix: str):
        import nibabel as nib

        from mrsynth.masks import compute_masks

        folder = SHARED / "open-ms-clinical"
        self.t1_path, self.t2_path = folder / f"{prefix}-T1W.nii.gz", folder / f"{prefix}-T2W-in-T1W.nii.gz"
        image = nib.load(str(self.t1_path))
        self.t1, self.affine = np.asarray(image.dataobj, np.float32), image.affine
        self.t2 = np.asarray(nib.load(str(self.t2_path)).dataobj, np.float32)
        started = time.perf_counter()
        masks = compute_masks(self.t1, self.affine, source=self.t1_path)
        self.mask_seconds = time.perf_counter() - started
        self.brain, self.seg = masks.brain, masks.seg


def _prepared(tmp: Path) -> dict:
    """Both pairs written as HCP-layout subjects (T1W, and the T2W on its grid) and prepared with the learned masks,
    as a user without FreeSurfer prepares them: id -> prepared subject."""
    from mrsynth.data import list_prepared, prepare_all
    from mrsynth.io import HCP_FOLDER, HCP_NAMES, discover

    for case, prefix in CASES.items():
        folder = tmp / "data" / case / HCP_FOLDER
        folder.mkdir(parents=True)
        for role, suffix in (("t1", "T1W"), ("t2", "T2W-in-T1W")):
            (folder / f"{HCP_NAMES[role]}.nii.gz").symlink_to(SHARED / "open-ms-clinical" / f"{prefix}-{suffix}.nii.gz")
    prepare_all(discover(tmp / "data"), tmp / "cache", progress=False, masks="learned")
    return {s.id: s for s in list_prepared(tmp / "cache")}


def _trained(tmp: Path, prepared: dict, train: str, test: str) -> tuple[dict, dict]:
    """The presets trained on ``train``, predicting ``test``: predictions and training seconds."""
    from mrsynth.training import Network, load_config

    predictions, seconds = {}, {}
    for label, preset in ((FINETUNE, "finetune"), (QUALITY, "quality")):
        settings = [f"data.cache={tmp / 'cache'}", f"data.train={train}", f"data.test={test}"]
        started = time.perf_counter()
        model = Network(load_config(None, settings + ["data.max_eval_patches=256"], [preset]))
        model = model.fit(tmp / f"run-{train}-{preset}", progress=False)
        seconds[label] = time.perf_counter() - started
        predictions[label] = model.predict(prepared[test])
    return predictions, seconds


def run() -> dict:
    from mrsynth.inference import Model
    from mrsynth.networks import PRETRAINED

    require_shared("open-ms-clinical", "hcp-mni152", "icbm2009c", "synthseg-label-maps")
    pretrained = Model.load(PRETRAINED)
    scans = {case: Scan(prefix) for case, prefix in CASES.items()}
    pairs = (("HCP template", HCP), ("ICBM template", ICBM))
    templates = {name: table_from(template_volumes(files)) for name, files in pairs}
    result = {"pretrained_model": pretrained_weights(), "cases": {}, "mask_seconds": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        prepared = _prepared(tmp)
        for case, scan in scans.items():
            other = next(c for c in scans if c != case)
            predictions = {ZERO_SHOT: predicted(pretrained, scan)}
            predictions |= {f"lookup table fitted on the {name}": predicted(t, scan) for name, t in templates.items()}
            trained, seconds = _trained(tmp, prepared, other, case)
            predictions |= trained
            predictions[f"lookup table fitted on {other}"] = predicted(table_from(scans[other]), scan)
            result["cases"][case] = {
                "trained_on": other,
                "scores": {name: scores(p, scan.t2, scan.brain, scan.seg) for name, p in predictions.items()},
                "train_seconds": seconds,
            }
            result["mask_seconds"][case] = scan.mask_seconds
            shown = {k: predictions[k] for k in (ZERO_SHOT, FINETUNE, f"lookup table fitted on {other}")}
            path = figures_folder(FIGURES) / f"{case}.png"
            comparison_figure(scan.t1, scan.t2, scan.brain, shown, path, f"{case} (raw clinical)")
    result["simulated"] = held_out_heads(pretrained, FIGURES)
    return result


def _row(label: str, entry: dict) -> str:
    cells = " | ".join(f"{entry[k]:.3f}" if k == "ssim_3d" else f"{entry[k]:.2f}" for k in KEYS)
    return f"| {label} | {cells} |"


def _verdicts(case: str, entry: dict) -> str:
    """The acceptance's comparisons, in psnr_optimal dB, computed from the scores."""
    optimal = {label: s["psnr_optimal"] for label, s in entry["scores"].items()}
    best_template = max(v for k, v in optimal.items() if k.endswith("template"))
    own_table = optimal[f"lookup table fitted on {entry['trained_on']}"]
    return (
        f"{case}: zero-shot - the better template table {optimal[ZERO_SHOT] - best_template:+.2f} dB (target +1); "
        f"fine-tuned - the table fitted on {entry['trained_on']} {optimal[FINETUNE] - own_table:+.2f} dB (target +2), "
        f"fine-tuned - quality {optimal[FINETUNE] - optimal[QUALITY]:+.2f} dB (target >= 0)."
    )


def markdown(result: dict) -> str:
    lines = [f"Pretrained model: {result['pretrained_model']}.", ""]
    header = "| method | " + " | ".join(KEYS) + " |\n|---|" + "---|" * len(KEYS)
    for case, entry in result["cases"].items():
        seconds = ", ".join(f"{k} {v:.0f}" for k, v in entry["train_seconds"].items())
        lines += [f"**{case}** (trained on {entry['trained_on']}; training seconds: {seconds})", "", header]
        lines += [_row(label, scores) for label, scores in entry["scores"].items()] + [""]
    lines += [_verdicts(case, entry) for case, entry in result["cases"].items()] + [""]
    masks = ", ".join(f"{case} {s:.0f} s" for case, s in result["mask_seconds"].items())
    lines += [f"Brain masks and classes computed from each T1W by the learned segmenter ({masks}).", ""]
    lines += held_out_markdown(result["simulated"])
    lines += ["", "Figures: benchmarks/results/real_scans/ (one per case)."]
    lines += ["", ATTRIBUTION]
    return "\n".join(lines)
