"""Pretraining: a recipe run step by step into a folder, the shipped models' way of being made.

``mrsynth pretrain --recipe synthesis|segmenter OUT ...`` runs a recipe (:mod:`.synthesis_recipe`: the pretrained
T1w -> T2w model; :mod:`.segmenter_recipe`: the learned segmenter): the recipe says which network, on which batches
(every batch drawn from the seed and the step, so that a resumed run follows the path of an uninterrupted one),
with which loss and optimizer in each of its phases, and how the model is described; this module runs it on the
one training loop (:mod:`.loop`), under torchrun where it is started so, and writes::

    OUT/checkpoint.pt   every ``checkpoint_every`` steps, at each phase's end and on SIGINT or SIGTERM
    OUT/progress.log    a line every ``LOG_EVERY`` steps (also to the log where no progress bar is drawn)
    OUT/pretrain.json   the recipe: its version, settings, command, times
    OUT/model/          the model (float16 weights), with its card (MODEL_CARD.md)
"""

from __future__ import annotations

import copy
import json
import signal
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict
from functools import partial
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..atomic import write_text
from ..errors import InputError, Interrupted
from ..logs import bar, bars_wanted, log
from ..networks import save_model
from ..networks.modelfile import DESCRIPTION
from ..runtime import tune_allocator
from .distributed import init_distributed, training_device
from .loop import Loop
from .model_card import CARD

CHECKPOINT, LOG, RECORD, MODEL = "checkpoint.pt", "progress.log", "pretrain.json", "model"
LOG_EVERY = 50


def pretrain(recipe, out: str | Path, resume: bool = False, progress: bool = True, command: str = "") -> Path:
    """Run (or resume) ``recipe`` into ``out``; returns the exported model folder ``out/model``."""
    out, config = Path(out), recipe.config
    _check_folder(out, resume)
    recipe.check()
    ranks = init_distributed(config.device)
    device = training_device(config.device, config.batch, ranks)
    tune_allocator()
    torch.manual_seed(config.seed)
    model = recipe.network().to(device).to(memory_format=torch.channels_last)
    loop = Loop(model, device, ranks, clip=recipe.clip)
    phases = recipe.phases()
    loop.use(*recipe.optimizer(phases[0], model))
    settings = json.loads(json.dumps(asdict(config)))  # as a checkpoint holds them
    if resume:
        loop.load(out / CHECKPOINT, settings, lambda step: loop.use(*recipe.optimizer(_phase_of(phases, step), model)))
        if loop.step >= phases[-1].end and (out / MODEL / DESCRIPTION).exists():
            log.info("%s: the pretraining finished already (%d steps); its model is %s", out, loop.step, out / MODEL)
            return out / MODEL
    ranks.barrier()
    if ranks.main:
        out.mkdir(parents=True, exist_ok=True)
    _announce(recipe, phases, loop.step if resume else None, ranks.world)
    started, first = time.perf_counter(), loop.step
    with _checkpoint_on_signal() as stop:
        _run(recipe, loop, phases, out, progress and ranks.main, stop, settings)
    seconds = time.perf_counter() - started
    if not ranks.main:
        ranks.barrier()
        return out / MODEL
    folder = _export(recipe, loop, out, seconds, command, first if resume else None)
    ranks.barrier()
    log.info("pretrained model: %s (%.0f s)", folder, seconds)
    return folder


def _check_folder(out: Path, resume: bool) -> None:
    """Refuse a folder that cannot take this run, before anything is written or computed."""
    if out.exists() and not out.is_dir():
        raise InputError("is a file, not a folder: give a folder for the pretraining", out)
    if resume and not (out / CHECKPOINT).exists():
        what = "no such folder" if not out.exists() else "no checkpoint in it yet (the run stopped before its first)"
        raise InputError(f"cannot resume: {what}", out)
    if not resume and (out / CHECKPOINT).exists():
        raise InputError("holds a pretraining already: --resume it, or choose another folder", out)


def _phase_of(phases: list, step: int):
    """The phase whose optimizer took step ``step`` (the first phase before any step)."""
    return next((p for p in phases if p.start < step <= p.end), phases[0])


def _announce(recipe, phases: list, resumed_at: int | None, world: int) -> None:
    """Say what will run before it runs: the recipe, its steps in all and by phase, where it resumes from."""
    parts = ", ".join(f"{p.name} {p.end - p.start:,}" for p in phases)
    where = "from the start" if resumed_at is None else f"resuming from the checkpoint of step {resumed_at:,}"
    processes = f" in {world} processes" if world > 1 else ""
    hint = f"; {recipe.hint()}" if recipe.hint() else ""
    log.info(
        "pretrain %s (recipe version %d): %s steps in all (%s), %s%s%s",
        recipe.name,
        recipe.version,
        f"{phases[-1].end:,}",
        parts,
        where,
        processes,
        hint,
    )


@contextmanager
def _checkpoint_on_signal():
    """SIGINT and SIGTERM end the run after its current step, with a checkpoint (:func:`_run`), not mid-write."""
    stop = {"signal": None}

    def ask(number, _frame):
        stop["signal"] = number

    handled = (signal.SIGINT, signal.SIGTERM)
    try:
        previous = {s: signal.signal(s, ask) for s in handled}
    except ValueError:  # not the main thread: signals stay as they are
        previous = {}
    try:
        yield stop
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _run(recipe, loop: Loop, phases: list, out: Path, progress: bool, stop: dict, settings: dict) -> None:
    steps = bar(total=phases[-1].end, initial=loop.step, allowed=progress, desc=f"pretrain {recipe.name}", unit="step")
    quiet_bar = not bars_wanted(progress)
    ranks = loop.ranks
    with (out / LOG).open("a") if ranks.main else nullcontext() as record:
        for phase in phases:
            if loop.step >= phase.end:
                continue
            if phase.start and loop.step == phase.start:
                loop.use(*recipe.optimizer(phase, loop.model))
            recent = []
            for batch in recipe.batches(phase, loop.step):
                inputs, *targets = (part[ranks.rank :: ranks.world] for part in batch)
                recent.append(loop.train_step(inputs, partial(_loss_of, recipe, targets)))
                steps.update()
                if loop.step % LOG_EVERY == 0 or loop.step == phase.end:
                    _log_line(record, f"step {loop.step}/{phases[-1].end}: loss {np.mean(recent):.4f}{recipe.status()}")
                    steps.set_postfix(loss=f"{np.mean(recent):.4f}")
                    if quiet_bar and ranks.main:
                        log.info("pretrain %s: step %d of %d", recipe.name, loop.step, phases[-1].end)
                    recent = []
                if loop.step % recipe.config.checkpoint_every == 0 or loop.step == phase.end or stop["signal"]:
                    loop.save(out / CHECKPOINT, settings)
                if stop["signal"]:
                    name = signal.Signals(stop["signal"]).name
                    log.warning("%s at step %d: checkpoint written; continue with --resume", name, loop.step)
                    raise Interrupted(stop["signal"])
                if loop.step >= phase.end:
                    break
    steps.close()


def _loss_of(recipe, targets: list, output: torch.Tensor) -> torch.Tensor:
    return recipe.loss(output, *targets)


def _log_line(record, line: str) -> None:
    """A progress line with its time (``logged_wall_time`` reads them back)."""
    if record is not None:
        record.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")
        record.flush()


def _export(recipe, loop: Loop, out: Path, seconds: float, command: str, resumed_at: int | None) -> Path:
    """``OUT/model`` (float16 weights, the recipe's description and card) and ``pretrain.json`` (the recipe)."""
    half = copy.deepcopy(loop.model).cpu().to(torch.float16)
    log_text = (out / LOG).read_text() if (out / LOG).exists() else ""
    record = {
        "recipe": recipe.name,
        "recipe_version": recipe.version,
        "config": asdict(recipe.config),
        "command": command,
        "seconds_this_session": round(seconds),
        "resumed_at_step": resumed_at,
        **logged_wall_time(log_text),
        "mrsynth": __version__,
        "torch": torch.__version__,
        "device": str(loop.device),
        "parameters": sum(p.numel() for p in loop.model.parameters()),
    }
    folder = save_model(out / MODEL, half, recipe.describe({"pretraining": record}))
    write_text(out / RECORD, json.dumps(record, indent=1) + "\n")
    write_text(folder / CARD, recipe.card(record))
    return folder


def logged_wall_time(log_text: str) -> dict:
    """Wall time of every session of a pretraining, from its progress log: a session starts where the step count
    goes back (a resume repeats the steps after its checkpoint) or after a pause of more than 10 logging intervals
    (a resume from a checkpoint at the last logged step, e.g. into the lesion phase); each lasts from its first line
    to its last plus one logging interval for the steps before its first line. Interruptions are not counted."""
    lines = []
    for line in log_text.splitlines():
        stamp, _, rest = line.partition(" step ")
        if rest:
            lines.append((time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")), int(rest.split("/")[0])))
    gaps = [b[0] - a[0] for a, b in zip(lines, lines[1:]) if b[1] > a[1]]
    pause = 10 * float(np.median(gaps)) if gaps else float("inf")
    sessions: list[list[tuple[float, int]]] = []
    for when, step in lines:
        if not sessions or step <= sessions[-1][-1][1] or when - sessions[-1][-1][0] > pause:
            sessions.append([])
        sessions[-1].append((when, step))
    total = 0.0
    for session in sessions:
        span = session[-1][0] - session[0][0]
        total += span + (span / (len(session) - 1) if len(session) > 1 else 0.0)
    return {"sessions": len(sessions), "logged_wall_seconds": round(total)}
