"""The command line's grammar: every subcommand and option, each shared option declared once.

Options that several commands take (the message options, ``--masks``, ``--config/--preset/--set``, ``--seed``,
``--device``) are argument groups of parent parsers, declared once here.  The ``train`` shortcuts
(``--epochs``, ``--lr``, ...) are each a configuration field, with that field's documentation as help.
"""

from __future__ import annotations

import argparse

from .. import __version__
from .bids import bids_command

#: ``train`` shortcuts: flag -> the configuration field it sets (its help is the field's documentation).
TRAIN_SHORTCUTS = {
    "--cache": "data.cache",
    "--split": "data.split",
    "--subject": "data.subject",
    "--train": "data.train",
    "--val": "data.val",
    "--test": "data.test",
    "--channels": "data.channels",
    "--norm": "data.norm",
    "--patch-size": "data.patch_size",
    "--stride": "data.stride",
    "--layers": "model.layers",
    "--epochs": "optim.epochs",
    "--batch-size": "optim.batch_size",
    "--lr": "optim.lr",
    "--device": "device",
    "--seed": "seed",
}


def _parent(title: str, add) -> argparse.ArgumentParser:
    """A parent parser holding one argument group (its options are declared once, by ``add``)."""
    parent = argparse.ArgumentParser(add_help=False)
    add(parent.add_argument_group(title))
    return parent


def _messages(group) -> None:
    loudness = group.add_mutually_exclusive_group()
    loudness.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only, no progress bars")
    loudness.add_argument("-v", "--verbose", action="store_true", help="also debug messages")
    group.add_argument(
        "--progress", action="store_true", help="progress bars even when standard error is not a terminal"
    )
    group.add_argument("--debug", action="store_true", help="show the full traceback of an internal error")


def _masks(group) -> None:
    from ..masks import DEFAULT_METHOD, SOURCES

    group.add_argument(
        "--masks",
        default="files",
        choices=SOURCES,
        help="where the brain mask and tissue labels come from: files (default): each subject's own "
        "segmentation and brain mask (--seg/--mask for one T1w); auto: computed from the T1w by "
        f"the default method ({DEFAULT_METHOD}); learned: by the shipped segmenter; ants-atlas: "
        "by atlas registration (needs the `masks` extra)",
    )


def _settings(group) -> None:
    from ..training import PRESETS

    group.add_argument("--config", help="TOML configuration ([data], [model], [optim], [augment] tables)")
    group.add_argument(
        "--preset",
        action="append",
        choices=list(PRESETS),
        help="named settings, applied in order before the config file (repeatable)",
    )
    _set(group)


def _set(group) -> None:
    group.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a setting (repeatable): a configuration field SECTION.FIELD for train and crossval "
        "(docs/training.md lists them), a setting of the recipe for pretrain (batch, crop, features, lr, ...)",
    )


def _seed(group) -> None:
    group.add_argument("--seed", type=int, default=0, help="random seed: simulated subjects, splits, training")


def _device(group) -> None:
    group.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps")


def build_parser(handlers: dict) -> argparse.ArgumentParser:
    """The ``mrsynth`` parser; ``handlers`` maps each subcommand to the function that runs it."""
    parents = {
        name: _parent(name, add)
        for name, add in (
            ("messages", _messages),
            ("masks", _masks),
            ("settings", _settings),
            ("set", _set),
            ("seed", _seed),
            ("device", _device),
        )
    }
    parser = argparse.ArgumentParser(prog="mrsynth", description="Predict T2w MRI from T1w MRI.")
    parser.add_argument("--version", action="version", version=f"mrsynth {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str, *shared: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name, help=help, description=help, parents=[parents["messages"]] + [parents[s] for s in shared]
        )
        sub.set_defaults(handler=handlers[name])
        return sub

    for add in (_data_commands, _train_command, _model_commands, _study_commands):
        add(command)
    return parser


def _data_commands(command) -> None:
    from ..io import LAYOUTS
    from ..io.fixtures import LAYOUTS as FIXTURE_LAYOUTS
    from ..masks import DEFAULT_METHOD, MASK_METHODS

    p = command("prepare", "validate subjects and write the prepared cache", "masks")
    p.add_argument("root", help="HCP folder, BIDS dataset or CSV manifest")
    p.add_argument("--out", required=True, help="cache folder")
    p.add_argument("--layout", default="auto", choices=LAYOUTS, help="input layout (auto: detected)")
    p.add_argument(
        "--axis", default="axial", help="slicing axis: axial (default, as in the paper), coronal, sagittal or 0/1/2"
    )
    p.add_argument("--jobs", type=int, default=1, help="subjects prepared in parallel")
    p.add_argument("--strict", action="store_true", help="stop at the first bad subject")
    p.add_argument("--force", action="store_true", help="rebuild subjects even if up to date")

    p = command("masks", "brain mask and tissue labels from a bare T1w (no FreeSurfer)")
    p.add_argument("t1", help="T1w NIfTI: whole head or skull-stripped, any orientation and voxel size")
    p.add_argument(
        "--out", required=True, help="output folder: brainmask, wmparc, tissue_classes, masks.json, QC figure"
    )
    p.add_argument(
        "--method",
        default=DEFAULT_METHOD,
        choices=MASK_METHODS,
        help=f"learned: the shipped segmenter (default: {DEFAULT_METHOD}); ants-atlas: atlas registration "
        "(needs the `masks` extra)",
    )
    p.add_argument("--no-figure", action="store_true", help="skip the QC figure")

    p = command("inspect", "summarise a prepared cache")
    p.add_argument("cache", help="prepared cache folder (mrsynth prepare)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--patch-size", type=int, default=128, help="patch side for the patch counts (the paper: 128)")
    p.add_argument("--stride", type=int, default=24, help="patch stride for the patch counts (the paper: 24)")

    p = command("labels", "print the FreeSurfer code -> tissue class table")
    p.add_argument("--markdown", action="store_true", help="as the Markdown page docs/labels.md")

    p = command("fixtures", "write tiny test subjects with a known label layout", "seed")
    p.add_argument("out", help="output folder")
    p.add_argument("--subjects", type=int, default=3, help="how many subjects")
    p.add_argument("--layout", default="hcp", choices=FIXTURE_LAYOUTS, help="the layout to write them in")

    p = command("simulate", "write synthetic T1w/T2w subjects from real anatomy", "seed")
    p.add_argument("out", help="output folder (HCP layout)")
    p.add_argument("--subjects", type=int, default=5, help="how many subjects (subject i uses seed + i)")
    p.add_argument(
        "--labels",
        help="a FreeSurfer label map, or a folder of them (one subject each); "
        "default: the MNI152 template shipped with nilearn",
    )
    p.add_argument("--voxel-size", type=float, default=1.0, help="output voxel size in mm (1.0, or 0.7 as HCP)")
    p.add_argument("--figure", action="store_true", help="also write simulated_subjects.png")


def _train_command(command) -> None:
    from ..training import load_config

    p = command("train", "train a network (writes a run folder)", "settings")
    p.add_argument("--out", help="run folder")
    p.add_argument("--resume", metavar="RUN", help="continue a stopped run from its checkpoint")
    p.add_argument(
        "--check",
        action="store_true",
        help="check the settings, the prepared data and the network (one batch through it), print a summary and "
        "write nothing",
    )
    p.add_argument(
        "--list-settings",
        action="store_true",
        help="print every configuration field (type, default, allowed values) and preset, and exit",
    )
    fields = _config_fields(load_config())
    for flag, name in TRAIN_SHORTCUTS.items():
        p.add_argument(flag, help=f"{fields[name]} ({name})")


def _model_commands(command) -> None:
    from ..evaluation import INTENSITY_SCALES

    p = command("predict", "predict whole T2w volumes", "masks", "device")
    p.add_argument(
        "--model",
        default="pretrained",
        help="pretrained (default: the model shipped with mrsynth, for any T1w), or a model folder (RUN/model, "
        "RUN/baselines/KIND)",
    )
    p.add_argument("--t1", help="T1w NIfTI")
    p.add_argument("--seg", help="FreeSurfer segmentation on the T1w grid (models with tissue masks)")
    p.add_argument("--mask", help="brain mask on the T1w grid")
    p.add_argument("--subject", help="a prepared subject folder (CACHE/<id>) instead of files")
    p.add_argument("--data", help="predict every subject of a data folder (any layout) or prepared cache")
    p.add_argument("--out", help="output NIfTI (with --t1 or --subject)")
    p.add_argument(
        "--out-dir", help="output folder (with --data): BIDS derivatives for BIDS input, else <id>.nii.gz per subject"
    )
    layout = p.add_mutually_exclusive_group()
    layout.add_argument(
        "--bids",
        action="store_true",
        help="write BIDS derivatives (sub-X/[ses-Y/]anat/..._desc-mrsynth_T2w.nii.gz + JSON sidecar) "
        "whatever the input layout",
    )
    layout.add_argument("--flat", action="store_true", help="write <id>.nii.gz per subject, even for BIDS input")
    p.add_argument(
        "--batch-size",
        type=int,
        default=8,
        help="at most this many slices per batch (on a CPU also at most 2^18 pixels: a batch stays in cache)",
    )

    p = command("evaluate", "score predictions against acquired T2w")
    p.add_argument("--pred", required=True, help="predicted NIfTI, or a folder of <id>.nii.gz")
    p.add_argument("--ref", required=True, help="reference T2w NIfTI, or a prepared cache / data folder")
    p.add_argument("--mask", help="brain mask (single file)")
    p.add_argument("--seg", help="segmentation for per-tissue MSE (single file)")
    p.add_argument(
        "--scale",
        default=INTENSITY_SCALES[0],
        choices=INTENSITY_SCALES,
        help="brain-median (default): each volume divided by its own brain median before scoring; "
        "raw: the stored intensities",
    )
    p.add_argument("--json", help="write every number to this JSON file")
    p.add_argument(
        "--strict",
        action="store_true",
        help="a folder of predictions must match the references one to one: a reference subject "
        "without a prediction, or a prediction without a reference, is an error (else a warning)",
    )

    p = command("baselines", "fit the tissue-mean and intensity-map baselines of a run")
    p.add_argument("run", help="run folder (baselines go to RUN/baselines/<kind>)")
    p.add_argument("--cache", help="the run's prepared cache, if it is no longer where the run recorded it")

    p = command("view", "an interactive viewer page (NiiVue): T1w, prediction, reference, error map")
    p.add_argument("pred", help="predicted T2w NIfTI")
    p.add_argument("--t1", help="the input T1w (same grid)")
    p.add_argument("--ref", help="the acquired T2w (same grid): adds the error map")
    p.add_argument("--mask", help="brain mask (same grid): crops the views, needed for the error map and table")
    p.add_argument("--seg", help="FreeSurfer segmentation (same grid): per-tissue rows in the error table")
    p.add_argument("--out", required=True, help="the page to write (.html, self-contained)")
    p.add_argument("--title", help="page title")
    p.add_argument(
        "--max-voxels",
        type=int,
        default=4_000_000,
        help="per volume, after cropping; larger volumes are block-averaged (default 4,000,000)",
    )


def _study_commands(command) -> None:
    from ..experiments.reproduce import EXPERIMENT_SCALES

    p = command("reproduce", "the paper's experiment grid: Tables 1-3, Figures 3-5, report", "seed")
    p.add_argument("--data", help="any supported layout (default: simulate subjects)")
    p.add_argument(
        "--scale",
        default="small",
        choices=list(EXPERIMENT_SCALES),
        help="small: 2-core CPU, about 20 min a seed (default); paper: the paper's settings; tiny: tests",
    )
    p.add_argument("--out", default="reproduction", help="output folder (re-running reuses its finished runs)")
    p.add_argument(
        "--seeds",
        type=int,
        help="training seeds (--seed, --seed + 1, ...): each table cell as mean ± SD, each effect with a bootstrap "
        "95%% CI; default: the scale's (small 3, paper 1, tiny 1)",
    )
    p.add_argument(
        "--compare",
        metavar="EARLIER",
        help="an earlier reproduction's folder (another simulator, other data): its effect sizes beside "
        "this run's in the report",
    )
    p.add_argument("--compare-label", default="earlier run", help="what to call it in the report")

    p = command(
        "crossval",
        "cross-validate over subjects: network vs both baselines on held-out volumes",
        "settings",
        "seed",
        "masks",
    )
    p.add_argument("data", help="any supported layout, or a prepared cache")
    p.add_argument("--folds", default="loo", help="loo (leave one subject out, default) or a number of folds")
    p.add_argument("--out", default="crossval", help="output folder (re-running resumes it)")

    p = command(
        "pretrain",
        "train a shipped model's network on simulated subjects: a recipe run step by step",
        "set",
        "seed",
        "device",
    )
    p.add_argument("out", help="output folder: checkpoint, progress.log, pretrain.json and the model (OUT/model)")
    p.add_argument(
        "--recipe",
        choices=("synthesis", "segmenter"),
        default="synthesis",
        help="synthesis: the pretrained T1w -> T2w model (default); segmenter: the learned segmenter (--masks learned)",
    )
    p.add_argument("--maps", required=True, help="folder of FreeSurfer label maps (the 20 SynthSeg maps)")
    p.add_argument(
        "--steps", type=int, help="steps of the main phase (default: the shipped model's recipe, lesion phase included)"
    )
    p.add_argument(
        "--lesion-steps",
        type=int,
        help="synthesis: steps of a lesion phase after the main one (default: the shipped model's 2000 without "
        "--steps, none with it)",
    )
    p.add_argument("--per-map", type=int, help="segmenter: subjects simulated from each label map (default 3)")
    p.add_argument("--workers", type=int, help="processes simulating subjects (default: the recipe's)")
    p.add_argument("--resume", action="store_true", help="continue from OUT's checkpoint, with the same settings")

    p = command("card", "write a pretrained model's card (MODEL_CARD.md) from its recipe and measured figures")
    p.add_argument("model", help="a pretrained model folder (OUT/model of mrsynth pretrain, or the package's asset)")
    p.add_argument(
        "--figures",
        nargs="+",
        metavar="REPORT",
        help="benchmark reports for the measured figures, one section each "
        "(benchmarks/results/pretrained.md benchmarks/results/real_scans.md)",
    )

    p = command("demo", "run the main job on the embedded default data")
    p.add_argument("--out", default="demo-output", help="output folder")
    bids_command(command)


def _config_fields(config, prefix: str = "") -> dict[str, str]:
    """``section.field`` -> documentation line, for every field of a configuration."""
    import dataclasses

    docs = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            docs.update(_config_fields(value, f"{prefix}{f.name}."))
        else:
            docs[prefix + f.name] = f.metadata.get("doc", "")
    if hasattr(config, "params"):  # the model's own parameters
        from ..networks import parameters

        docs.update({f"{prefix}{p.name}": f"{config.kind}: {p.doc}" for p in parameters(config.kind)})
    return docs
