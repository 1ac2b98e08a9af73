"""Within-tissue statistics of simulated subjects against the HCP MNI152 template pair, the ICBM 2009c pair beside it.

Grey and white matter (brain mask, eroded one voxel): robust coefficient of variation of T1w and T2w, and the
T1w-T2w correlation inside the tissue, for three subjects simulated from the default anatomy (seeds 0-2) with the
simulator's defaults before their calibration (bias 0.12, SNR 25-45, texture SD 0.04 for T1, T2 and PD alike,
T1-T2 correlation 0.5, partial volume as the template's probability maps give it) and with today's calibrated
defaults, and for the real template pairs (averages of many subjects: less noise and texture than one scan). The
ICBM pair has no segmentation of its own: the HCP `Avgwmparc` is resampled onto it (nearest neighbour, both in MNI
space), so its figures are a check that the calibration did not fit one template, not a target. A simulated
statistic within 25 % of the HCP pair's is what the calibration asks. Skips the template rows where ../shared/data
is absent.
"""

from __future__ import annotations

from benchmarks.fixtures import SHARED, uncalibrated_variation

DATA = SHARED
SEEDS = (0, 1, 2)
HCP_ROW, ICBM_ROW, CALIBRATED_ROW = (
    "HCP MNI152 templates (real)",
    "ICBM 2009c templates (real)",
    "simulated, calibrated",
)
TOLERANCE = 0.25


def _templates() -> dict:
    import nibabel as nib
    import numpy as np
    from nibabel.processing import resample_from_to

    from mrsynth.simulate import within_tissue_statistics

    load = lambda path: nib.load(str(DATA / path))  # noqa: E731
    array = lambda image: np.asarray(image.dataobj).squeeze()  # noqa: E731
    wmparc = load("hcp-mni152/Avgwmparc.nii.gz")
    wmparc = nib.Nifti1Image(array(wmparc), wmparc.affine)
    rows = {
        HCP_ROW: within_tissue_statistics(
            array(load("hcp-mni152/MNI152_T1_1mm_brain.nii.gz")),
            array(load("hcp-mni152/MNI152_T2_1mm_brain.nii.gz")),
            array(wmparc),
            array(load("hcp-mni152/MNI152_T1_1mm_brain_mask.nii.gz")),
        )
    }
    icbm_t1 = load("icbm2009c/mni_icbm152_t1_tal_nlin_sym_09c.nii.gz")
    seg = np.rint(resample_from_to(wmparc, icbm_t1, order=0).get_fdata()).astype(np.int32)
    rows[ICBM_ROW] = within_tissue_statistics(
        array(icbm_t1),
        array(load("icbm2009c/mni_icbm152_t2_tal_nlin_sym_09c.nii.gz")),
        seg,
        array(load("icbm2009c/mni_icbm152_t1_tal_nlin_sym_09c_mask.nii.gz")),
    )
    return rows


def run() -> dict:
    import time
    from dataclasses import replace

    import numpy as np

    from mrsynth.simulate import Variation, default_anatomy, simulate_subject, within_tissue_statistics

    rows = _templates() if (DATA / "hcp-mni152").exists() and (DATA / "icbm2009c").exists() else {}
    anatomy = default_anatomy()
    seconds, cpu = {}, {}
    for label, variation in (
        ("simulated, before calibration", replace(Variation(), **uncalibrated_variation())),
        (CALIBRATED_ROW, Variation()),
    ):
        per_seed, seconds[label], cpu[label] = [], [], []
        for seed in SEEDS:
            started, started_cpu = time.perf_counter(), time.process_time()
            s = simulate_subject(anatomy, seed, variation=variation)
            seconds[label].append(time.perf_counter() - started)
            cpu[label].append(time.process_time() - started_cpu)
            per_seed.append(within_tissue_statistics(s.t1, s.t2, s.codes, s.mask))
        rows[f"{label}, mean of seeds {SEEDS[0]}-{SEEDS[-1]}"] = {
            k: float(np.mean([p[k] for p in per_seed])) for k in per_seed[0]
        }
    return {
        "rows": rows,
        "simulate_seconds_median": {k: float(np.median(v)) for k, v in seconds.items()},
        "simulate_cpu_seconds_median": {k: float(np.median(v)) for k, v in cpu.items()},
    }


def within_tolerance(result: dict) -> dict[str, float] | None:
    """The calibrated simulation's statistics over the HCP pair's (None without the templates)."""
    rows = result["rows"]
    if HCP_ROW not in rows:
        return None
    calibrated = next(row for name, row in rows.items() if name.startswith(CALIBRATED_ROW))
    return {k: calibrated[k] / rows[HCP_ROW][k] for k in calibrated}


def markdown(result: dict) -> str:
    keys = list(next(iter(result["rows"].values())))
    lines = ["| source | " + " | ".join(k.replace("_", " ") for k in keys) + " |", "|---|" + "---|" * len(keys)]
    lines += [f"| {name} | " + " | ".join(f"{row[k]:.3f}" for k in keys) + " |" for name, row in result["rows"].items()]
    ratios = within_tolerance(result)
    if ratios is not None:
        inside = sum(abs(r - 1) <= TOLERANCE for r in ratios.values())
        lines += [
            "| calibrated / HCP | " + " | ".join(f"{ratios[k]:.2f}" for k in keys) + " |",
            "",
            f"{inside} of {len(ratios)} calibrated statistics within {TOLERANCE:.0%} of the HCP pair's.",
        ]
    cpu = result.get("simulate_cpu_seconds_median", {})
    for label, seconds in result.get("simulate_seconds_median", {}).items():
        lines.append(
            f"Simulating one 1 mm subject, {label}: median {seconds:.1f} s wall clock"
            + (f", {cpu[label]:.1f} s of CPU time" if label in cpu else "")
            + f" (seeds {SEEDS[0]}-{SEEDS[-1]}; the wall clock exceeds the CPU time where other work shared the cores)."
        )
    return "\n".join(lines)
