"""Training: a configuration and prepared subjects -> a run folder with the trained model, and the baselines.

:mod:`.loop` is the one training loop (optimizer, schedule, checkpoint, resume) that every network is stepped by,
with :mod:`.distributed` (device, torchrun ranks, compiled step); :mod:`.config` is the typed configuration of a
run (what can be set, and its presets), read and written by :mod:`.configfile` (TOML, presets, overrides);
:mod:`.runs` the run folder (data, split, history); :mod:`.trainer` a run's epochs, with :mod:`.losses` and
:mod:`.export` beside it; :mod:`.baselines` fits the lookup tables; :mod:`.methods` is the one fit protocol for
networks and lookup tables; :mod:`.pretrain` runs a recipe on simulated subjects, :mod:`.synthesis_recipe` the
shipped pretrained model's and :mod:`.segmenter_recipe` the learned segmenter's; :mod:`.model_card` writes a
pretrained model's card.
"""

from .baselines import KINDS as BASELINES
from .baselines import fit_for_run, fit_lookup, fit_table
from .config import PRESETS, TrainConfig, validate
from .configfile import load_config, reference_markdown, to_toml
from .losses import loss_function, mean_loss, patch_errors, patch_losses, pooled_losses
from .methods import Lookup, Method, Network, with_baselines
from .runs import RunData, build_data, is_finished, load_run_data, read_summary, resume_config
from .trainer import Trainer, check, epoch_order, train, train_or_reuse

__all__ = [
    "BASELINES",
    "Lookup",
    "Method",
    "Network",
    "PRESETS",
    "RunData",
    "TrainConfig",
    "Trainer",
    "build_data",
    "check",
    "epoch_order",
    "fit_for_run",
    "fit_lookup",
    "fit_table",
    "is_finished",
    "load_config",
    "load_run_data",
    "loss_function",
    "mean_loss",
    "patch_errors",
    "patch_losses",
    "pooled_losses",
    "read_summary",
    "reference_markdown",
    "resume_config",
    "to_toml",
    "train",
    "train_or_reuse",
    "validate",
    "with_baselines",
]
