"""Within-tissue statistics of simulated subjects against the HCP MNI152 template pair.

Grey and white matter (brain mask, eroded one voxel): robust coefficient of variation of
T1w and T2w, and the T1w-T2w correlation inside the tissue, for three subjects simulated from
the default anatomy (seeds 0-2) without and with the within-tissue texture, and for the real
HCP templates (an average of many subjects: less noise and texture than one scan, so its CVs
are a lower bound for a real subject's). Skips the template row where ../shared/data is absent.
"""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "hcp-mni152"
SEEDS = (0, 1, 2)


def run() -> dict:
    from dataclasses import replace

    import nibabel as nib
    import numpy as np

    from mrsynth.simulate import Variation, default_anatomy, simulate_subject, within_tissue_statistics

    rows = {}
    if DATA.exists():
        load = lambda name: np.asarray(nib.load(str(DATA / name)).dataobj).squeeze()
        rows["HCP MNI152 templates (real)"] = within_tissue_statistics(
            load("MNI152_T1_1mm_brain.nii.gz"),
            load("MNI152_T2_1mm_brain.nii.gz"),
            load("Avgwmparc.nii.gz"),
            load("MNI152_T1_1mm_brain_mask.nii.gz"),
        )
    anatomy = default_anatomy()
    for label, variation in (
        ("simulated, no texture", replace(Variation(), texture_sd=0.0)),
        ("simulated, texture (default)", Variation()),
    ):
        per_seed = []
        for seed in SEEDS:
            s = simulate_subject(anatomy, seed, variation=variation)
            per_seed.append(within_tissue_statistics(s.t1, s.t2, s.codes, s.mask))
        rows[f"{label}, mean of seeds {SEEDS[0]}-{SEEDS[-1]}"] = {
            k: float(np.mean([p[k] for p in per_seed])) for k in per_seed[0]
        }
    return {"rows": rows}


def markdown(result: dict) -> str:
    keys = list(next(iter(result["rows"].values())))
    lines = ["| source | " + " | ".join(k.replace("_", " ") for k in keys) + " |", "|---|" + "---|" * len(keys)]
    lines += [f"| {name} | " + " | ".join(f"{row[k]:.3f}" for k in keys) + " |" for name, row in result["rows"].items()]
    return "\n".join(lines)
