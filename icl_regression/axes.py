"""The threshold against an axis of the training setup, and final values above the threshold (numpy only).

The paper's training-side experiments (Raventós et al. Figs. 3, 4, 6, 7, 10, 13) read M* while varying what is
trained: the data budget, the task dimension D, weight decay, width and depth. Here a sweep's rows carry the value of
each such axis (read from the run's own config.json, since sweep rows name only M, batch, steps and seed), rows are
grouped by axis value, and each group gets its threshold with an interval.

Every call into `threshold` goes through `threshold_for`: the one place to adapt when its API changes.

Budgets are paired as the sweep summary pairs them (`threshold.budget_pairs`): two budgets form a pair when they agree
in one of batch and steps and the other is the next larger value in the sweep (batch B vs 2B, or steps N vs 2N).
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from icl_regression import names, results, threshold
from icl_regression.store import StoreError, iter_runs

Budget = tuple[int, int]  # (batch_size, steps)
BATCH, STEPS = threshold.BATCH, threshold.STEPS

# Axes of the training setup the experiments sweep, as config paths.
DIM = "data.dim"
WEIGHT_DECAY = "train.weight_decay"
WIDTH = "model.d_model"
DEPTH = "model.num_layers"

# Final values reported above the threshold (Fig. 10): distance from ridge and loss, on both distributions.
ABOVE_THRESHOLD_KEYS = (names.THRESHOLD_METRIC, names.loss_key(names.TRUE, names.PT),
                        names.delta_key(names.PRETRAIN, "pt_ridge"), names.loss_key(names.PRETRAIN, names.PT))


def budget_of(row: Mapping) -> Budget:
    return int(row["batch_size"]), int(row["steps"])


def budget_label(budget: Budget) -> str:
    return f"B={budget[0]}_N={budget[1]}"


def budget_pairs(budgets: Iterable[Budget]) -> list[dict]:
    """`threshold.budget_pairs` as dicts: kind ("batch": same steps, batch B then the next larger batch; "steps": same
    batch, steps N then the next larger steps), small, large, ratio of the varying coordinate, and label."""
    return [{"kind": kind, "small": small, "large": large,
             "ratio": large[i] / small[i], "label": f"{budget_label(small)}_vs_{budget_label(large)}"}
            for kind, small, large in threshold.budget_pairs(list(budgets)) for i in [0 if kind == BATCH else 1]]


def threshold_for(rows: Sequence[Mapping], budgets: Sequence[Budget], num_replicates: int | None = None) -> dict:
    """M* from the rows of exactly these budgets: one budget gives the midpoint estimate; two (small, large) give
    also their crossing (the paper's definition).

    Returns {"crossing": estimate or None, "midpoint": {budget label: estimate}}, each estimate holding
    `log2_num_tasks`, `interval` (95%) and the replicate counts (`estimate_fields`). The single adapter to
    `threshold.estimate_thresholds`: with the rows restricted to one or two budgets, its pairing can only form the
    requested pair (and forms none when the two differ in both batch and steps).
    """
    wanted = [tuple(b) for b in budgets]
    if not 1 <= len(wanted) <= 2:
        raise ValueError(f"threshold_for takes one or two budgets, got {wanted}")
    chosen = [r for r in rows if budget_of(r) in wanted]
    if not chosen:
        raise ValueError(f"no rows at budgets {wanted}; the rows have {sorted({budget_of(r) for r in rows})}")
    estimates = threshold.estimate_thresholds(chosen, num_replicates)
    crossing = next(iter(estimates["crossing"].values()), None) if len(wanted) == 2 else None
    return {"crossing": estimate_fields(crossing) if crossing is not None else None,
            "midpoint": {label: estimate_fields(est) for label, est in estimates["midpoint"].items()}}


def estimate_fields(est: Mapping | None) -> dict:
    """The fields of a threshold estimate that the analyses keep (NaN with an empty interval for None), what its
    interval accounts for included: with one seed, evaluation noise only (`threshold.interval_source`)."""
    if est is None:
        return {"log2_num_tasks": math.nan, "interval": [math.nan, math.nan], "replicates_inside_grid": 0,
                "replicates": 0, "num_seeds": 0, "interval_source": threshold.interval_source(0)}
    return {"log2_num_tasks": est["log2_num_tasks"], "interval": list(est["interval"]),
            "replicates_inside_grid": est["replicates_inside_grid"], "replicates": est["replicates"],
            "num_seeds": est["num_seeds"], "interval_source": est["interval_source"]}


# --- Rows with their axes. ---


def axis_value(config: Mapping, axis: str) -> Any:
    """The value of `axis` ("section.field") in a run's config dict."""
    section, field = axis.split(".")
    try:
        return config[section][field]
    except KeyError:
        raise ValueError(f"axis {axis!r} is not a config field; use 'section.field', e.g. {DIM!r}")


def load_rows(workdirs: Sequence[Path] | Path, axes: Sequence[str] = ()) -> list[dict]:
    """Rows of every finished run under the results folders (read from the runs themselves, not from a sweep summary,
    so they never depend on how that summary was made), each with `axes`: {axis: value} from its config.json."""
    workdirs = [workdirs] if isinstance(workdirs, (str, Path)) else list(workdirs)
    rows = []
    for workdir in workdirs:
        for run in iter_runs(Path(workdir) / names.RUNS_DIR):
            summary = run.summary()
            if summary is None:
                continue
            config = run.config()
            rows.append({**{k: summary[k] for k in results.ROW_FIELDS}, "workdir": str(workdir),
                         "axes": {a: axis_value(config, a) for a in axes}})
    if not rows:
        raise StoreError(f"no finished runs under {', '.join(str(w) for w in workdirs)}")
    return rows


def group_by_axes(rows: Sequence[Mapping], axes: Sequence[str]) -> dict[tuple, list[Mapping]]:
    """{(value of each axis): rows}, sorted by value."""
    groups = defaultdict(list)
    for row in rows:
        groups[tuple(row["axes"][a] for a in axes)].append(row)
    return dict(sorted(groups.items()))


# --- The threshold against an axis. ---


def primary(entry: Mapping) -> dict:
    """The estimate an axis figure plots: the crossing where located, else the midpoint of the largest budget."""
    crossing = entry.get("crossing")
    if crossing and math.isfinite(crossing["log2_num_tasks"]):
        return {"method": "crossing", **crossing}
    midpoints = entry.get("midpoint", {})
    if midpoints:
        label = list(midpoints)[-1]
        return {"method": f"midpoint {label}", **midpoints[label]}
    return {"method": "none", **estimate_fields(None)}


def threshold_against_axis(rows: Sequence[Mapping], axes: Sequence[str], budgets: Sequence[Budget] | None = None,
                           num_replicates: int | None = None) -> list[dict]:
    """One entry per value of `axes`: M* of that value's rows, at `budgets` (one or two; default: the group's own
    budgets when it has one or two, else its smallest batch pair).

    Each entry: {"value": {axis: value}, "budgets", "num_seeds", "crossing", "midpoint", "primary"}.
    """
    out = []
    for values, group in group_by_axes(rows, axes).items():
        chosen = list(budgets) if budgets else _default_budgets(group)
        est = threshold_for(group, chosen, num_replicates)
        seeds = {r["seed"] for r in group if budget_of(r) in chosen}
        entry = {"value": dict(zip(axes, values)), "budgets": [list(b) for b in chosen], "num_seeds": len(seeds),
                 "crossing": est["crossing"], "midpoint": est["midpoint"]}
        entry["primary"] = primary(entry)
        out.append(entry)
    return out


def _default_budgets(rows: Sequence[Mapping]) -> list[Budget]:
    budgets = sorted({budget_of(r) for r in rows}, key=lambda b: (b[0] * b[1], b))
    if len(budgets) <= 2:
        return budgets
    pairs = [p for p in budget_pairs(budgets) if p["kind"] == BATCH] or budget_pairs(budgets)
    return [pairs[0]["small"], pairs[0]["large"]] if pairs else budgets[:1]


def scaled_threshold(entry: Mapping, scale: float) -> dict:
    """M*/scale with its interval (e.g. κ* = M*/D), from an entry's primary estimate; beyond the grid stays beyond
    it (log2 ±inf: M*/scale inf or 0), not located stays NaN."""
    est = entry["primary"]
    shift = math.log2(scale)
    x = est["log2_num_tasks"] - shift
    lo, hi = (v - shift for v in est["interval"])
    return {"log2": x, "value": 2**x, "interval": [2**lo, 2**hi]}


# --- Final values across seeds. ---


def seed_stats(values: Sequence[float]) -> dict:
    """Mean, standard deviation (ddof 1; NaN for one seed: the spread is unknown, not 0) and range over seeds, and
    the values themselves."""
    values = np.asarray([v for v in values if v is not None and math.isfinite(v)], float)
    if not len(values):
        return {"mean": math.nan, "std": math.nan, "min": math.nan, "max": math.nan, "n": 0, "values": []}
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else math.nan,
            "min": float(values.min()), "max": float(values.max()), "n": int(len(values)),
            "values": [float(v) for v in values]}


def final_values(rows: Sequence[Mapping], keys: Sequence[str], group: Sequence[str] = ()) -> list[dict]:
    """Per (axes in `group`, budget, M): seed statistics of each final metric in `keys` (finished runs only)."""
    grouped = defaultdict(list)
    for row in rows:
        if row["status"] == names.DONE:
            grouped[(tuple(row["axes"][a] for a in group), budget_of(row), row["num_tasks"])].append(row)
    out = []
    for (values, budget, num_tasks), members in sorted(
            grouped.items(), key=lambda item: (item[0][0], item[0][1], item[0][2] or math.inf)):
        out.append({"value": dict(zip(group, values)), "budget": list(budget), "num_tasks": num_tasks,
                    **{key: seed_stats([r["final"][key] for r in members]) for key in keys}})
    return out


def ratio_curves(rows: Sequence[Mapping], group: Sequence[str] = ()) -> list[dict]:
    """Per (axes in `group`, budget, finite M): seed statistics of r = Δ_PT,Ridge / (Δ_PT,Ridge + Δ_PT,dMMSE) on
    T_true, the model's relative position between ridge (0) and dMMSE (1). It crosses 1/2 exactly where the midpoint
    estimate's curve Δ_PT,Ridge − Δ_PT,dMMSE crosses 0 (threshold.py), on a scale that is comparable between M.
    Shown beside every M* so that a transition is visible where its 1/2 crossing is not located."""
    grouped = defaultdict(list)
    for row in rows:
        total = row["final"][names.THRESHOLD_METRIC] + row["final"][names.MIDPOINT_METRIC]
        if row["status"] == names.DONE and row["num_tasks"] > 0 and total > 0:
            key = (tuple(row["axes"][a] for a in group), budget_of(row), row["num_tasks"])
            grouped[key].append(row["final"][names.THRESHOLD_METRIC] / total)
    return [{"value": dict(zip(group, values)), "budget": list(budget), "num_tasks": num_tasks, **seed_stats(ratios)}
            for (values, budget, num_tasks), ratios in sorted(grouped.items())]


def final_values_above(rows: Sequence[Mapping], log2_threshold: float, budget: Budget,
                       keys: Sequence[str] = ABOVE_THRESHOLD_KEYS) -> dict:
    """Fig. 10: at `budget`, the final values for every M above the threshold and for the M = ∞ model, over seeds.

    Returns {"above": [{num_tasks, key: seed stats, ratio_to_infinite}], "all": the same for every finite M,
    "infinite": {key: seed stats} or None, "log2_threshold"}; `ratio_to_infinite` is the ratio of an M's mean to the
    M = ∞ mean (1 = as good as a model that never sees a task twice). With no located threshold "above" is empty.
    """
    at_budget = [r for r in rows if budget_of(r) == tuple(budget)]
    values = final_values(at_budget, keys)
    infinite = next((v for v in values if v["num_tasks"] <= 0), None)
    finite = [v for v in values if v["num_tasks"] > 0]
    for entry in finite:
        entry["ratio_to_infinite"] = {k: entry[k]["mean"] / infinite[k]["mean"]
                                      if infinite and infinite[k]["mean"] > 0 else math.nan for k in keys}
    above = [v for v in finite if math.isfinite(log2_threshold) and math.log2(v["num_tasks"]) > log2_threshold]
    return {"budget": list(budget), "log2_threshold": log2_threshold, "keys": list(keys), "above": above,
            "all": finite, "infinite": {k: infinite[k] for k in keys} if infinite else None}


def largest_finite_num_tasks(rows: Sequence[Mapping]) -> int | None:
    finite = [r["num_tasks"] for r in rows if r["num_tasks"] > 0]
    return max(finite) if finite else None
