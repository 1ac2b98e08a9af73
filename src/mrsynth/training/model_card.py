"""The model card of a pretrained model (``MODEL_CARD.md`` beside its weights): what it is, its training data and
licence, the exact command, intended use, known limits, and the measured figures.

The card is made from the recipe the model's description records; its figures from a benchmark's saved report
(``benchmarks/results/pretrained.md``, ``real_scans.md``, each beside its ``.json``), by :func:`write_card`
(``mrsynth card MODEL --figures REPORT ...``), so that no benchmark writes into the package."""

from __future__ import annotations

import json
from pathlib import Path

from ..atomic import write_text
from ..errors import InputError
from ..networks import read_description

CARD = "MODEL_CARD.md"
NOT_MEASURED = "Not measured yet: run `python -m benchmarks pretrained real_scans`."
FIGURES_START, FIGURES_END = (
    "<!-- measured figures: python -m benchmarks pretrained real_scans -->",
    "<!-- end of figures -->",
)


def _lesion_phase(config: dict) -> str:
    """The model card's sentence on the lesion phase, if the recipe had one."""
    if not config.get("lesion_steps"):
        return ""
    ms, tumour = config["lesion_odds"]
    return (
        f" Then a lesion phase of {config['lesion_steps']:,} steps on new subjects: MS-like lesions in"
        f" {ms:.0%} of them, a tumour-like mass in {tumour:.0%}, crops centred near a lesion"
        f" {config['lesion_crops']:.0%} of the time, lesion pixels weighted {config['lesion_weight']:g} times in"
        f" the loss, the learning rate warmed up to {config['lesion_lr']:g} and decayed to 0."
    )


def _footprint(footprint: bool) -> str:
    """How the card says the prediction reaches the input's grid."""
    if not footprint:
        return ""
    return (
        " (each of its voxels the average of the prediction over the voxel's footprint, as a scanner acquires a"
        " thick slice; the value at the voxel's centre for voxels of 1 mm or less)"
    )


def _lesion_limits(config: dict) -> str:
    """How bright lesions come out, as measured by ``python -m benchmarks pretrained`` for each kind of recipe."""
    if not config.get("lesion_steps"):
        return "even the simulated MS-like lesions and oedema come out much less T2w-bright than they are"
    return (
        "the simulated MS-like lesions come out T2w-bright from an MPRAGE inside its training ranges, though most less"
        " bright than they are, but a tumour's oedema barely brighter than white matter from a spin-echo T1w (where it"
        " is faint), and every lesion far less bright than it is from sequences outside its training ranges"
    )


def model_card(
    recipe: dict,
    brain_median: float,
    figures: str = NOT_MEASURED,
    footprint: bool = False,
) -> str:
    """The model card of a pretrained model, from its recipe, the brain median of the T2w it writes and whether its
    prediction is brought back onto the input's grid as each voxel's footprint average (its input spec);
    ``figures`` (Markdown) between the two markers (:func:`write_card`)."""
    config = recipe["config"]
    maps = config["map_indices"]
    resumed = "" if recipe["resumed_at_step"] is None else f" (resumed at step {recipe['resumed_at_step']:,})"
    return f"""# mrsynth pretrained T1w -> T2w (recipe version {recipe["recipe_version"]})

**What it is.** A 2.5D U-Net (MONAI `BasicUNet`, features {tuple(config["features"])}, no normalization layers,
{recipe["parameters"]:,} parameters, float16 weights) that predicts a T2-weighted image with the contrast of the
Human Connectome Project's T2w (brain median {brain_median:g}) from any T1-weighted image. It works
slice by slice (each with its two neighbours) on a 1 mm RAS grid: `mrsynth predict` resamples the input onto it
and the prediction back onto the input's grid{_footprint(footprint)}, and writes 0 outside the brain mask (given
with `--mask`, or computed by the learned segmenter).

**Training data.** No real image: {config["steps"]:,} steps on subjects simulated on the fly by
`mrsynth.simulate.engine` from the SynthSeg label maps {min(maps)}-{max(maps)} of 20 (sorted by name; maps
1-{min(maps) - 1} are held out for tests; neither the HCP MNI152 nor the ICBM 2009c template entered training).
Each subject: a random deformation and pose, T1w by a random sequence (MPRAGE: TI 700-1200 ms, flip 6-12 degrees;
spoiled gradient echo: TR 8-40 ms, flip 12-40 degrees; spin echo: TR 350-800 ms, TE 8-25 ms) at 1.5 T or 3 T,
voxels of 0.7-1.5 mm and slices up to 5 mm thick, bias field, Rician noise, ghosting at times, skull-stripped or
whole head with random intensities outside the brain, and at times
MS-like lesions or a tumour-like mass.{_lesion_phase(config)} The label maps come from BBillot/SynthSeg (commit
66342c1f05e520f3729a6d7ca1042eb7f01b6266, `data/training_label_maps/`), Apache License 2.0, like these weights
(`LICENSE`).

**How it was made.** `{recipe["command"] or "mrsynth pretrain"}` (recipe version {recipe["recipe_version"]},
seed {config["seed"]}, batch {config["batch"]} crops of {config["crop"]} pixels, AdamW with a one-cycle learning
rate to {config["lr"]:g}, L1 inside the brain mask grown by {config["loss_margin_mm"]:g} mm), mrsynth
{recipe["mrsynth"]}, torch {recipe["torch"]}, on {recipe["device"]}: {recipe["seconds_this_session"]:,} s in its
last session{resumed}; {recipe["logged_wall_seconds"] / 3600:.1f} hours of wall time in {recipe["sessions"]}
session(s) in all, from its progress log.{" " + recipe["converted"] if recipe.get("converted") else ""}

**Intended use.** A T2w where none was acquired, for research: visual reference, registration targets,
pipelines that expect a T2w. Fine-tune it on a site's own T1w/T2w pairs (`mrsynth train --preset finetune`).

**Known limits.** It predicts HCP's T2w contrast, not the site's: no T1w can tell which T2w protocol a site runs.
Pathology it was not shown (haemorrhage, calcification, contrast-enhanced T1w, children's brains) is not
predicted faithfully, and {_lesion_limits(config)} (the lesion contrast rows below): do not read lesions
from it. Not for diagnosis.

## Measured figures

{FIGURES_START}
{figures}
{FIGURES_END}
"""


def segmenter_card(record: dict) -> str:
    """The card of a learned segmenter made by its recipe."""
    config = record["config"]
    maps = config["map_indices"]
    return (
        f"# mrsynth learned segmenter (recipe version {record['recipe_version']})\n\n"
        f"A 2D U-Net of {record['parameters']:,} parameters that labels a T1w voxel as outside the brain or one of "
        f"seven tissue classes, trained by `{record['command'] or 'mrsynth pretrain --recipe segmenter'}` for "
        f"{config['steps']:,} steps on {config['per_map']} subjects simulated from each of the label maps "
        f"{min(maps)}-{max(maps)}, mrsynth {record['mrsynth']}, torch {record['torch']}, on {record['device']}: "
        f"{record['seconds_this_session']:,} s in its last session. Its measured accuracy: "
        "`python -m benchmarks masks`.\n"
    )


def write_card(folder: str | Path, figures: list[str | Path] | str | Path | None = None) -> Path:
    """``MODEL_CARD.md`` of a pretrained model folder, from the recipe its description records and, for the
    synthesis model, the measured figures of benchmark reports (each ``NAME.md``; its ``NAME.json`` beside it says
    when and by which command they were measured), one section each in the order given."""
    folder = Path(folder)
    info = read_description(folder)
    record = info.training.get("pretraining")
    if not record:
        raise InputError("not a pretrained model: its description records no recipe", folder)
    if record.get("recipe", "synthesis") != "synthesis":
        return write_text(folder / CARD, segmenter_card(record))
    reports = [figures] if isinstance(figures, (str, Path)) else list(figures or [])
    for report in map(Path, reports):
        if not report.exists():
            raise InputError("no such report (run the benchmark first)", report)
    sections = "\n\n".join(_figures_section(Path(report)) for report in reports) or NOT_MEASURED
    return write_text(folder / CARD, model_card(record, info.norm().t2_reference_scale, sections, info.spec.footprint))


def _figures_section(report: Path) -> str:
    """One benchmark report as a section of the card, headed by when and by which command it was measured."""
    text = report.read_text().strip()
    measured = report.with_suffix(".json")
    if not measured.exists():
        return f"### {report.stem}\n\n{text}"
    result = json.loads(measured.read_text())
    return (
        f"### {report.stem}\n\nMeasured by `{result['command']}` on {result['machine']['date']} "
        f"(benchmarks/RESULTS.md, section `{report.stem}`, has the machine and every score).\n\n{text}"
    )
