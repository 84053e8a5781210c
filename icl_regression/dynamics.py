"""Training dynamics read from stored metrics: the time t* of closest approach to ridge, and t* ∝ M^α.

SPEC.md ("The threshold"): early in training, models below the threshold first approach ridge and only later turn
toward dMMSE, after a time t* that grows with M. Per run, t* is the evaluated step (resolution: the evaluation
interval; step 0 excluded) where d(t) = Δ^{T_true}_{PT,Ridge} is lowest. A run is *transient* when it approached
ridge (the minimum is below d at step 0, where one was recorded), the minimum lies before its last evaluation and d
has risen clearly since (final > margin × minimum); otherwise *monotone* (still approaching ridge at the end,
flat, or moving away from ridge from the start). Per M and data budget, t* is the median over seeds; the power law
is fitted to the transient finite M values of one budget.

Numpy only: no jax, no model.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from icl_regression import names

TRANSIENT = "transient"
MONOTONE = "monotone"
NO_DATA = "no data"  # no finite value of the metric after step 0 (e.g. diverged at once)

TRANSIENT_MARGIN = 1.25  # transient: final value > TRANSIENT_MARGIN × minimum, the minimum before the last step
MIN_FIT_POINTS = 3  # fewer transient M values than this: no interval for α
NUM_FIT_BOOTSTRAP = 1000  # bootstrap replicates of the (M, t*) points for α's interval
FIT_SEED = 0  # fixed, so that the interval is reproducible
FIT_LEVEL = 0.95


def metric_curve(records: Sequence[Mapping], key: str = names.THRESHOLD_METRIC) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of `key`'s mean over positions, sorted by step, one value per step (the last written)."""
    by_step = {}
    for record in records:
        value = record.get("mean", {}).get(key)
        by_step[int(record["step"])] = math.nan if value is None else float(value)
    steps = np.array(sorted(by_step), dtype=np.int64)
    return steps, np.array([by_step[s] for s in steps], dtype=float)


def closest_approach(steps: np.ndarray, values: np.ndarray, margin: float = TRANSIENT_MARGIN) -> dict:
    """t*, the initial, minimum and final values and the kind (transient / monotone / no data) of one curve."""
    initial = values[steps == 0]
    initial_value = float(initial[0]) if len(initial) and np.isfinite(initial[0]) else math.nan
    usable = (steps > 0) & np.isfinite(values)
    if not np.any(usable):
        return {"t_star": math.nan, "initial_value": initial_value, "min_value": math.nan, "final_step": math.nan,
                "final_value": math.nan, "kind": NO_DATA}
    steps, values = steps[usable], values[usable]
    best = int(np.argmin(values))
    t_star, min_value = int(steps[best]), float(values[best])
    final_step, final_value = int(steps[-1]), float(values[-1])
    approached = not (min_value >= initial_value)  # True when no step-0 value was recorded
    transient = approached and t_star < final_step and final_value > margin * min_value
    return {"t_star": t_star, "initial_value": initial_value, "min_value": min_value, "final_step": final_step,
            "final_value": final_value, "kind": TRANSIENT if transient else MONOTONE}


def per_run_dynamics(metrics_by_run: Mapping[str, Sequence[Mapping]], rows: Sequence[Mapping],
                     margin: float = TRANSIENT_MARGIN) -> list[dict]:
    """One entry per row: its sweep values, t*, the minimum and final Δ, and its kind."""
    out = []
    for row in rows:
        steps, values = metric_curve(metrics_by_run.get(row["name"], []))
        entry = {k: row[k] for k in ("name", "num_tasks", "batch_size", "steps", "seed")}
        entry["status"] = row.get("status", names.DONE)
        entry["eval_interval"] = int(np.min(np.diff(steps))) if len(steps) > 1 else None
        entry.update(closest_approach(steps, values, margin))
        out.append(entry)
    return out


def _median(values: Sequence[float]) -> float:
    return float(np.median(values)) if len(values) else math.nan


def per_num_tasks_dynamics(per_run: Sequence[Mapping]) -> list[dict]:
    """Per (M, budget), over the seeds that finished without diverging: median t*, and whether M is transient.

    M counts as transient when at least half its seeds are; its fitted t* (`t_star_transient`) is then the median
    over the transient seeds only, since a monotone seed's t* is just the end of training (a censored value).
    """
    grouped = defaultdict(list)
    for run in per_run:
        if run["status"] == names.DONE and run["kind"] != NO_DATA:
            grouped[(run["batch_size"], run["steps"], run["num_tasks"])].append(run)
    out = []
    for (batch, steps, num_tasks), runs in sorted(grouped.items(),
                                                  key=lambda item: (item[0][:2], item[0][2] or math.inf)):
        transient = [r for r in runs if r["kind"] == TRANSIENT]
        is_transient = 2 * len(transient) >= len(runs)
        out.append({"num_tasks": num_tasks, "batch_size": batch, "steps": steps, "num_seeds": len(runs),
                    "num_transient": len(transient), "kind": TRANSIENT if is_transient else MONOTONE,
                    "t_star_median": _median([r["t_star"] for r in runs]),
                    "t_star_transient": _median([r["t_star"] for r in transient]) if is_transient else math.nan,
                    "min_value_median": _median([r["min_value"] for r in runs]),
                    "final_value_median": _median([r["final_value"] for r in runs])})
    return out


def _slope_intercept(log_m: np.ndarray, log_t: np.ndarray) -> tuple[float, float]:
    """Least squares of log t on log M; NaN when the M values do not span a line."""
    if len(np.unique(log_m)) < 2:
        return math.nan, math.nan
    slope, intercept = np.polyfit(log_m, log_t, 1)
    return float(slope), float(intercept)


def fit_power_law(num_tasks: Sequence[float], t_star: Sequence[float], num_bootstrap: int = NUM_FIT_BOOTSTRAP,
                  seed: int = FIT_SEED, level: float = FIT_LEVEL) -> dict:
    """t* ≈ prefactor · M^α by least squares on log-log axes; α's interval by bootstrap over the (M, t*) points."""
    m, t = np.asarray(num_tasks, float), np.asarray(t_star, float)
    ok = np.isfinite(m) & np.isfinite(t) & (m > 0) & (t > 0)
    log_m, log_t = np.log(m[ok]), np.log(t[ok])
    n = len(log_m)
    alpha, intercept = _slope_intercept(log_m, log_t) if n >= 2 else (math.nan, math.nan)
    fit = {"alpha": alpha, "alpha_interval": [math.nan, math.nan],
           "prefactor": math.exp(intercept) if math.isfinite(intercept) else math.nan, "num_points": int(n),
           "num_tasks": [float(x) for x in m[ok]], "t_star": [float(x) for x in t[ok]], "note": ""}
    if n < MIN_FIT_POINTS:
        fit["note"] = (f"{n} transient finite M value(s): at least {MIN_FIT_POINTS} are needed for an interval"
                       + ("" if n >= 2 else " and 2 for a fit"))
        return fit
    rng = np.random.default_rng(seed)
    slopes = np.array([_slope_intercept(log_m[idx], log_t[idx])[0]
                       for idx in rng.integers(0, n, size=(num_bootstrap, n))])
    slopes = slopes[np.isfinite(slopes)]
    tail = 100 * (1 - level) / 2
    fit["alpha_interval"] = [float(np.percentile(slopes, tail)), float(np.percentile(slopes, 100 - tail))]
    fit["note"] = (f"least squares of log t* on log M over {n} transient finite M; {int(100 * level)}% interval "
                   f"from {len(slopes)}/{num_bootstrap} bootstrap resamples of the points (seed {seed})")
    return fit


def _budget_label(batch_size: int, steps: int) -> str:
    return f"B={batch_size}_N={steps}"


def summarize_dynamics(metrics_by_run: Mapping[str, Sequence[Mapping]], rows: Sequence[Mapping],
                       margin: float = TRANSIENT_MARGIN) -> dict:
    """{"dynamics": {per_run, per_num_tasks, power_law, power_law_by_budget, ...}} for a sweep summary.

    `power_law` is the fit for the largest data budget (batch × steps): the longest look at each curve, so the one
    where late transients are least likely to be cut off; every budget's fit is in `power_law_by_budget`.
    """
    per_run = per_run_dynamics(metrics_by_run, rows, margin)
    per_num_tasks = per_num_tasks_dynamics(per_run)
    by_budget = {}
    for batch, steps in sorted({(p["batch_size"], p["steps"]) for p in per_num_tasks},
                               key=lambda b: (b[0] * b[1], b)):
        points = [p for p in per_num_tasks if (p["batch_size"], p["steps"]) == (batch, steps)
                  and p["num_tasks"] > 0 and p["kind"] == TRANSIENT]
        fit = fit_power_law([p["num_tasks"] for p in points], [p["t_star_transient"] for p in points])
        by_budget[_budget_label(batch, steps)] = {"batch_size": batch, "steps": steps, **fit}
    if by_budget:
        power_law = by_budget[list(by_budget)[-1]]
    else:
        power_law = {"batch_size": None, "steps": None, **fit_power_law([], [])}
        power_law["note"] = "no finished run with a finite Δ after step 0"
    return {"dynamics": {"metric": names.THRESHOLD_METRIC, "transient_margin": margin, "per_run": per_run,
                         "per_num_tasks": per_num_tasks, "power_law": power_law,
                         "power_law_by_budget": by_budget}}


def format_dynamics(dynamics: Mapping) -> str:
    """t* per M and budget, and the power-law fit, as text."""
    dyn = dynamics.get("dynamics", dynamics)
    lines = [f"{'M':>7} {'B':>5} {'steps':>7} {'seeds':>5} {'transient':>9} {'t* median':>10} {'min Δ':>9} "
             f"{'final Δ':>9}"]
    for p in dyn["per_num_tasks"]:
        label = "inf" if p["num_tasks"] <= 0 else str(p["num_tasks"])
        lines.append(f"{label:>7} {p['batch_size']:>5} {p['steps']:>7} {p['num_seeds']:>5} "
                     f"{p['num_transient']:>9} {p['t_star_median']:>10.0f} {p['min_value_median']:>9.4f} "
                     f"{p['final_value_median']:>9.4f}")
    for label, fit in dyn["power_law_by_budget"].items():
        lo, hi = fit["alpha_interval"]
        lines.append(f"power law {label}: t* ≈ {fit['prefactor']:.3g} · M^{fit['alpha']:.3f}, "
                     f"95% interval [{lo:.3f}, {hi:.3f}], {fit['num_points']} points. {fit['note']}")
    return "\n".join(lines)
