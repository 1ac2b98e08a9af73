"""The paper's effects over several training seeds: each table cell as mean and SD, each effect with a bootstrap 95 %
confidence interval over seeds and test units, and a verdict in words computed from the interval.

A test unit is what the test set samples: a test subject for the across-subject tables, a test patch for the
within-subject Table 1 (one subject: its patches are the sample). A bootstrap resample draws seeds with replacement
and, for each drawn seed, that seed's test units with replacement; the two models of an effect are scored on the
same drawn units (paired), so the interval measures how much the loss reduction would move with other seeds and
other test subjects, not the noise of each loss separately.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..training import BASELINES

#: The paper's loss values (section 5.2, Tables 1-3), keyed by (layers, input).
PAPER = {
    "table1": {(3, "T1w"): 12795, (3, "T1w + masks"): 10664, (9, "T1w"): 5177, (9, "T1w + masks"): 4091},
    "table2": {(3, "T1w"): 20385, (3, "T1w + masks"): 16627, (9, "T1w"): 12643, (9, "T1w + masks"): 9783},
    "table3": {(9, "T1w"): 9093, (9, "T1w + masks"): 7728},
}
INPUTS = {"T1w": 1, "T1w + masks": 9}


def experiment(name: str) -> tuple[str, int, str]:
    """``table2-L9-masks`` -> ``("table2", 9, "T1w + masks")``."""
    table, tag = name.split("-", 1)
    layers, kind = tag.split("-")
    return table, int(layers[1:]), "T1w + masks" if kind == "masks" else "T1w"


def reduction(before: float, after: float) -> float:
    """Relative reduction of the loss from ``before`` to ``after`` (positive: lower is better)."""
    return (before - after) / before


RESAMPLES = 2000
CONFIDENCE = 0.95
HOLDS, NOT_SIGNIFICANT, OPPOSITE = (
    "same direction, CI excludes 0",
    "same direction, not significant",
    "opposite",
)
SIZE_FACTOR = 2.0  # "within a factor of 2 of the paper's size"


def unit_errors(errors: dict[str, np.ndarray], unit_names: list[str] | None) -> dict[str, list]:
    """Per-patch errors (:func:`mrsynth.training.patch_errors`) summed by test unit.

    ``unit_names``: the test subjects' ids by position (units are subjects), or None (units are patches).
    """
    if unit_names is None:
        keys = [str(int(item)) for item in errors["item"]]
    else:
        keys = [unit_names[int(position)] for position in errors["subject"]]
    units = sorted(set(keys))
    index = {unit: i for i, unit in enumerate(units)}
    where = np.array([index[k] for k in keys], dtype=np.int64)
    total = lambda values: np.bincount(where, weights=values, minlength=len(units)).tolist()  # noqa: E731
    return {"units": units, "sse": total(errors["sse"]), "pixels": total(errors["pixels"])}


def _paired(before: dict, after: dict) -> tuple[np.ndarray, ...]:
    """Squared-error sums and pixel counts of both models over their common units (one seed)."""
    common = sorted(set(before["units"]) & set(after["units"]))
    if not common:
        raise ValueError("the two models of an effect share no test unit")
    pick = lambda side: [side["units"].index(u) for u in common]  # noqa: E731
    b, a = pick(before), pick(after)
    return (
        np.asarray(before["sse"])[b],
        np.asarray(before["pixels"])[b],
        np.asarray(after["sse"])[a],
        np.asarray(after["pixels"])[a],
    )


def bootstrap_interval(
    before: list[dict], after: list[dict], resamples: int = RESAMPLES, seed: int = 0
) -> tuple[float, float]:
    """The 95 % percentile interval of the loss reduction from ``before`` to ``after``.

    Both lists hold one :func:`unit_errors` per training seed (same seeds, same order). Each resample draws
    seeds with replacement, then each drawn seed's units with replacement, and pools squared errors and pixels
    over the draw: reduction = 1 - MSE(after) / MSE(before).
    """
    per_seed = [_paired(b, a) for b, a in zip(before, after)]
    rng = np.random.default_rng(seed)
    totals = np.zeros((resamples, 4))
    drawn_seeds = rng.integers(len(per_seed), size=(resamples, len(per_seed)))
    for column in range(len(per_seed)):
        for s, arrays in enumerate(per_seed):
            rows = np.flatnonzero(drawn_seeds[:, column] == s)
            draws = rng.integers(len(arrays[0]), size=(len(rows), len(arrays[0])))
            totals[rows] += np.stack([values[draws].sum(axis=1) for values in arrays], axis=1)
    ratio = (totals[:, 2] / totals[:, 3]) / (totals[:, 0] / totals[:, 1])
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(1 - ratio, [tail, 100 - tail])
    return float(low), float(high)


def verdict(paper: float, ours: float, interval: tuple[float, float]) -> str:
    """In words: the paper's direction with an interval that excludes 0, the paper's direction without, or not."""
    if np.sign(ours) != np.sign(paper):
        return OPPOSITE
    excludes_zero = interval[0] > 0 if paper > 0 else interval[1] < 0
    return HOLDS if excludes_zero else NOT_SIGNIFICANT


def effect(name: str, table: str, paper: float, ours: float, interval: tuple[float, float] | None) -> dict:
    """One effect, ours beside the paper's: both reductions, the interval, the verdict and the size ratio."""
    ratio = ours / paper if paper else None
    row = {
        "effect": name,
        "table": table,
        "paper_reduction": paper,
        "ours_reduction": ours,
        "same_direction": bool(np.sign(paper) == np.sign(ours)),
        "size_ratio": ratio,
        "within_factor_2": bool(ratio is not None and 1 / SIZE_FACTOR <= ratio <= SIZE_FACTOR),
    }
    if interval is not None:
        row["ci95"] = [float(v) for v in interval]
        row["verdict"] = verdict(paper, ours, interval)
    return row


#: The paper's 11 effects: name, where, the cell before, the cell after (table, layers, input).
EFFECTS = [
    *(
        (f"masks vs T1w only, {layers} layers", table, (table, layers, "T1w"), (table, layers, "T1w + masks"))
        for table in ("table1", "table2")
        for layers in (3, 9)
    ),
    *(
        (f"9 vs 3 layers, {kind}", table, (table, 3, kind), (table, 9, kind))
        for table in ("table1", "table2")
        for kind in ("T1w", "T1w + masks")
    ),
    ("masks vs T1w only, 9 layers", "table3", ("table3", 9, "T1w"), ("table3", 9, "T1w + masks")),
    *(
        (f"many vs 1 training subjects, 9 layers, {kind}", "table2->table3", ("table2", 9, kind), ("table3", 9, kind))
        for kind in ("T1w", "T1w + masks")
    ),
]
EFFECTS.sort(key=lambda e: ("table1", "table2", "table3", "table2->table3").index(e[1]))


def effects(losses: dict, units: dict | None = None) -> list[dict]:
    """The paper's 11 effects from our losses.

    ``losses[(table, layers, input)]``: the mean test loss over seeds; ``units[(table, layers, input)]``: one
    :func:`unit_errors` per seed (None: no interval, no verdict).
    """
    rows = []
    for name, table, before, after in EFFECTS:
        paper = reduction(PAPER[before[0]][before[1:]], PAPER[after[0]][after[1:]])
        ours = reduction(losses[before], losses[after])
        interval = bootstrap_interval(units[before], units[after]) if units else None
        rows.append(effect(name, table, paper, ours, interval))
    return rows


def mean_and_sd(values: list[dict]) -> dict:
    """Nested score dicts of several seeds as one: each number's mean, and ``<key>_sd`` beside it."""
    first = values[0]
    merged = {}
    for key, value in first.items():
        if isinstance(value, dict):
            merged[key] = mean_and_sd([v[key] for v in values])
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            numbers = np.array([v[key] for v in values], dtype=float)
            merged[key] = float(numbers.mean())
            merged[f"{key}_sd"] = float(numbers.std(ddof=1)) if len(numbers) > 1 else None
        else:
            merged[key] = value
    return merged


def load_compared(path: str | Path, label: str) -> dict:
    """The effects of an earlier reproduction (its folder or ``results.json``), to report beside this one's.

    For example a run made with an earlier simulator, or on other data: each effect's size
    relative to the paper's, before and after, shows what the change did to fidelity.
    """
    path = Path(path)
    path = path / "results.json" if path.is_dir() else path
    try:
        earlier = json.loads(path.read_text())
        compared = [
            effect(c["effect"], c["table"], c["paper_reduction"], c["ours_reduction"], c.get("ci95"))
            for c in earlier["comparisons"]
        ]
    except FileNotFoundError:
        raise InputError(
            "no reproduction results here (expected the folder of an earlier `mrsynth reproduce` or its results.json)",
            path,
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InputError(f"not the results of a reproduction ({type(error).__name__}: {error})", path) from None
    return {
        "label": label,
        "source": str(path),
        "data": earlier.get("data"),
        "mrsynth": earlier.get("mrsynth"),
        "scale": (earlier.get("scale") or {}).get("name"),
        "seeds": earlier.get("seeds", [earlier.get("seed")]),
        "comparisons": compared,
    }


def median_ratio(comparisons: list[dict]) -> float | None:
    """The median of the effects' sizes relative to the paper's."""
    ratios = [c["size_ratio"] for c in comparisons if c.get("size_ratio") is not None]
    return float(np.median(ratios)) if ratios else None


def _mse(detail: dict, table: str, row: str, loss: str) -> float:
    return detail[table][row]["patch"][loss]


#: The verdict's loss: brain pixels only, since a patch's background is predicted right by every method (the
#: baselines too) and dilutes the difference; the paper's every-pixel MSE is reported beside it.
VERDICT_LOSS = "mse_brain"


def baseline_outcomes(detail: dict, per_seed: dict) -> dict:
    """Each network against both baselines of its table (``detail``: the means over seeds; ``per_seed``: each
    seed's grid): the mean test patch MSEs over brain pixels and over every pixel, whether the network beats both
    (brain pixels), and in how many seeds."""
    grids = [g["tables_detail"] for g in per_seed.values()]
    outcome = {}
    for table, rows in detail.items():
        if not all(f"baseline: {b}" in rows for b in BASELINES):
            continue
        outcome[table] = {}
        for key in rows:
            if key.startswith("baseline"):
                continue
            rows_of = {"network": key, **{b: f"baseline: {b}" for b in BASELINES}}
            losses = {
                loss: {name: _mse(detail, table, row, loss) for name, row in rows_of.items()}
                for loss in (VERDICT_LOSS, "mse")
            }
            wins = sum(
                _mse(grid, table, key, VERDICT_LOSS)
                < min(_mse(grid, table, f"baseline: {b}", VERDICT_LOSS) for b in BASELINES)
                for grid in grids
            )
            network, *baselines = losses[VERDICT_LOSS].values()
            outcome[table][key] = {
                **losses,
                "beats_both": bool(network < min(baselines)),
                "seeds_beating_both": int(wins),
                "seeds": len(per_seed),
            }
    return outcome
