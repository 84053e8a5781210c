"""The task-diversity threshold M*, read from stored sweep results, with bootstrap intervals.

Two estimates (SPEC.md, "The threshold"), both on d(M) = Δ^{T_true}_{PT,Ridge} against log2 M (finite M only):
- crossing: the paper's definition. For two data budgets b < b' (batch B vs 2B, or steps N vs 2N), more data
  moves the model away from ridge below M* (d_b' > d_b) and towards it above (d_b' < d_b); M* is where the
  relative difference (d_b' − d_b)/(d_b' + d_b) changes sign from + to −. Differences smaller than
  CROSSING_TOLERANCE count as no change: the sign of a 0.1% difference is not evidence (at very small M both
  budgets memorise equally well), so a crossing needs a clear change on both sides.
- midpoint: a single budget. r(M) = Δ_{PT,Ridge}/Δ_{dMMSE,Ridge} on T_true falls from ≈1 (the model is dMMSE)
  to ≈0 (the model is ridge); M* is where r crosses 1/2. The ratio only carries information where dMMSE and
  ridge differ by more than the trained model can resolve: M values with Δ_{dMMSE,Ridge} below
  RESOLUTION_FACTOR × the M = ∞ model's own Δ_{PT,Ridge} (its distance from ridge at this budget) are left out.
  Without this, at large M (dMMSE → ridge) the ratio of two small numbers swamps the curve.
Where a curve changes sign from + to − more than once (noise), the change with the strongest evidence on both sides
wins: the index i (with s_i > 0 >= s_{i+1}) maximising Σ_{j≤i} s_j − Σ_{j>i} s_j, for s the signed curve; M* is
interpolated inside that split.
Intervals: percentiles of the estimate over bootstrap replicates that resample evaluation sequences (replicates
stored in each run's summary) and seeds (with replacement, per M and budget).

Numpy only: no jax, no model.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Sequence

import numpy as np

from icl_regression import names

Budget = tuple[int, int]  # (batch_size, steps)
RESOLUTION_FACTOR = 2.0
CROSSING_TOLERANCE = 0.02


def split_crossing(xs: np.ndarray, signed: np.ndarray) -> float:
    """Where `signed` (sampled at increasing `xs`) goes from positive to negative; NaN if it never does.

    Only actual sign changes (s_i > 0 >= s_{i+1}) are candidates; among several, the one with the strongest
    evidence on both sides wins (see the module docstring). A curve that dips below zero and comes back up (the
    ratio at large M, where the model's own error floor exceeds half of Δ_{dMMSE,Ridge}) keeps its dip.
    """
    xs, signed = np.asarray(xs, float), np.asarray(signed, float)
    ok = np.isfinite(signed)
    xs, signed = xs[ok], signed[ok]
    candidates = np.flatnonzero((signed[:-1] > 0) & (signed[1:] <= 0))
    if len(candidates) == 0:
        return math.nan
    prefix = np.cumsum(signed)[:-1]
    evidence = prefix - (signed.sum() - prefix)
    best = int(candidates[np.argmax(evidence[candidates])])
    lo, hi = signed[best], signed[best + 1]
    return float(xs[best] + (xs[best + 1] - xs[best]) * lo / (lo - hi))


def _value(row: dict, key: str, replicate: int | None) -> float:
    """A row's final value of `key`, or its bootstrap replicate `replicate` when it stored replicates."""
    stored = row.get("bootstrap", {}).get(key)
    if replicate is not None and stored:
        return stored[replicate % len(stored)]
    return row["final"][key]


def _delta(row, replicate):
    return _value(row, names.THRESHOLD_METRIC, replicate)


def _ratio(row, replicate):
    scale = _value(row, names.THRESHOLD_SCALE, replicate)
    return _value(row, names.THRESHOLD_METRIC, replicate) / scale if scale > 0 else math.nan


def _curves(rows: Sequence[dict], value_fn, replicate: int | None, rng: np.random.Generator | None):
    """{budget: {log2 M: value}}: `value_fn(row, replicate)` averaged over seeds (resampled when `rng`)."""
    grouped = defaultdict(list)
    for row in rows:
        if row["num_tasks"] <= 0 or row["status"] != names.DONE:
            continue
        grouped[(row["batch_size"], row["steps"]), math.log2(row["num_tasks"])].append(value_fn(row, replicate))
    curves = defaultdict(dict)
    for (budget, x), values in sorted(grouped.items()):
        values = np.asarray(values)
        if rng is not None:
            values = values[rng.integers(0, len(values), len(values))]
        curves[budget][x] = float(values.mean())
    return curves


def budgets(rows: Sequence[dict]) -> list[Budget]:
    """The data budgets of a sweep, smallest (batch × steps) first."""
    return sorted({(r["batch_size"], r["steps"]) for r in rows}, key=lambda b: (b[0] * b[1], b))


def crossing_estimate(rows, small: Budget, large: Budget, replicate=None, rng=None) -> float:
    curves = _curves(rows, _delta, replicate, rng)
    xs = sorted(set(curves[small]) & set(curves[large]))
    d_small = np.array([curves[small][x] for x in xs])
    d_large = np.array([curves[large][x] for x in xs])
    relative = (d_large - d_small) / (d_large + d_small + 1e-12)
    return split_crossing(np.array(xs), np.where(np.abs(relative) < CROSSING_TOLERANCE, 0.0, relative))


def ridge_floor(rows, budget: Budget, replicate=None) -> float:
    """Δ^{T_true}_{PT,Ridge} of the M = ∞ models at `budget` (mean over seeds); 0 where the sweep has none."""
    values = [_delta(r, replicate) for r in rows if r["num_tasks"] <= 0 and r["status"] == names.DONE
              and (r["batch_size"], r["steps"]) == budget]
    return float(np.mean(values)) if values else 0.0


def midpoint_estimate(rows, budget: Budget, replicate=None, rng=None) -> float:
    ratio = _curves(rows, _ratio, replicate, rng)[budget]
    scale = _curves(rows, lambda row, rep: _value(row, names.THRESHOLD_SCALE, rep), replicate, None)[budget]
    floor = ridge_floor(rows, budget, replicate)
    xs = [x for x in sorted(ratio) if scale[x] > RESOLUTION_FACTOR * floor]
    return split_crossing(np.array(xs), np.array([ratio[x] for x in xs]) - 0.5)


def _with_interval(estimate_fn, num_replicates: int, seed: int = 0, level: float = 0.95) -> dict:
    point = estimate_fn(None, None)
    rng = np.random.default_rng(seed)
    samples = np.array([estimate_fn(r, rng) for r in range(num_replicates)])
    finite = samples[np.isfinite(samples)]
    tail = 100 * (1 - level) / 2
    interval = [float(np.percentile(finite, tail)), float(np.percentile(finite, 100 - tail))] if len(finite) else \
        [math.nan, math.nan]
    return {"log2_num_tasks": point, "num_tasks": 2**point if np.isfinite(point) else math.nan,
            "interval": interval, "replicates": int(num_replicates), "replicates_with_estimate": int(len(finite))}


def estimate_thresholds(rows: Sequence[dict], num_replicates: int | None = None) -> dict:
    """Both estimates with intervals; the crossing of the two smallest budgets is primary when there are two."""
    all_budgets = budgets(rows)
    if num_replicates is None:
        stored = [len(r["bootstrap"].get(names.THRESHOLD_METRIC, [])) for r in rows if r.get("bootstrap")]
        num_replicates = max(stored + [200])
    midpoint = {f"B={b}_N={n}": _with_interval(lambda r, g, b=(b, n): midpoint_estimate(rows, b, r, g),
                                                num_replicates) for b, n in all_budgets}
    crossing = {}
    for small, large in zip(all_budgets, all_budgets[1:]):
        label = f"B={small[0]}_N={small[1]}_vs_B={large[0]}_N={large[1]}"
        crossing[label] = _with_interval(lambda r, g, s=small, l=large: crossing_estimate(rows, s, l, r, g),
                                         num_replicates)
    if crossing and np.isfinite(next(iter(crossing.values()))["log2_num_tasks"]):
        method, primary = "crossing", next(iter(crossing.values()))
    elif midpoint:
        method, primary = "midpoint", next(iter(midpoint.values()))
    else:
        method, primary = "none", {"log2_num_tasks": math.nan, "interval": [math.nan, math.nan]}
    return {"method": method, "threshold_log2_num_tasks": primary["log2_num_tasks"],
            "threshold_interval": primary["interval"], "crossing": crossing, "midpoint": midpoint}
