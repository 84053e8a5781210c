"""Training dynamics read from stored metrics: t* three ways, the model as a mixture of strategies, t* ∝ M^α.

SPEC.md ("The threshold"): early in training, models below the threshold first approach ridge and only later turn
toward dMMSE, after a time t* that grows with M. Three published clocks for that turn, each read here from the
metrics every evaluation stores (T_true, averaged over context positions):

- (a) `ridge`: the step where Δ^{T_true}_{PT,Ridge} is lowest (Raventós et al. 2023; their t* ∝ M^0.47).
- (b) `loss`: the step where the model's own T_true loss L/D is lowest (Carroll et al. 2025, "transient ridge").
  Ridge is the posterior mean under T_true, so E[L_PT] = L_ridge + Δ_PT,Ridge exactly: (b) differs from (a) only
  by the evaluation noise of the cross term E[(PT − ridge)(ridge − y)]. It checks (a); it is not a second clock.
- (c) `mixture`: the step where the model's ridge weight a (`names.mixture_weight_key`: the least-squares a of
  PT ≈ a·ridge + (1 − a)·dMMSE, per position, averaged over positions) falls through 1/2 for the last time: from
  then on the model is better written as dMMSE than as ridge (the strategy switch of Wurgaft et al. 2025, whose
  Bayesian account predicts a superlinear growth of the switch time with M).

Below the evaluation grid: a minimum is the vertex of a quadratic fitted by least squares to the curve against
u = ln(step) over the evaluations within a factor `WINDOW_FACTOR` of the lowest one (at least `MIN_WINDOW`
evaluations), fitted again over the window recentred on that vertex. The raw argmin of a curve that jitters from
evaluation to evaluation (training noise, independent between evaluations) lands on whichever evaluation dipped
lowest; the local fit averages that jitter over the window and places the vertex between grid points. ln(step),
because the dynamics are multiplicative in time (t* ∝ M^α): the window then scales with t* and the bottom of a curve
is closer to symmetric. A wider window averages more jitter but shifts the vertex of a lopsided valley towards its
flatter side; 1.5 was chosen on synthetic valleys with the jitter of three-seed CPU curves (RMS error of ln t* 0.11
against the grid argmin's 0.18), and a shift that is the same fraction of t* at every M leaves α unchanged. A
parabola that is not convex, or whose vertex leaves the window, falls back to the grid argmin. The crossing of
a = 1/2 is the root of a straight line fitted to a against ln(step) over the evaluations within `WINDOW_FACTOR` of the
two that bracket the last downward crossing, kept between those two (linear interpolation between them when the
window holds only them or the line is not falling). tests/test_dynamics.py measures both on synthetic curves with a
known t*.

Per M and data budget the curve is the mean over seeds, and t* is located on it. Intervals: `NUM_BOOTSTRAP`
replicates, each resampling seeds with replacement (the same seeds, by value, for every M: nested pools and shared
seeds make the M correlated; an M missing a seed averages the drawn seeds it has) and taking one of the
evaluation-sequence replicates stored at every evaluation (`"bootstrap"` in each metrics record; the same resample
for every model, since all models share the T_true sequences); t* is located again on each replicate curve; 95%
percentile intervals. A replicate whose t* lies at or past the end of the run counts as +inf, one at or before the
first evaluation as 0 (`censored`), so an interval with more than its tail censored says so ("past the end")
instead of stopping at the last evaluation. With few seeds these are optimistic (three seeds give ten distinct
resamples, and a bootstrap mean of n values spreads √((n − 1)/n) as far as the mean itself). Runs stored without
the per-evaluation replicates give seed-only intervals, and the output says so.

Whether M is transient is decided by its noise, not by a fixed margin: the rise of Δ^{T_true}_{PT,Ridge} from t*
(the local fit's value there) to its mean over the last `END_FRACTION` of training. With S >= 2 seeds, each seed's
rise is measured at the t* of the mean of the other seeds, so that no seed is measured where its own jitter dipped
(a rise measured at the curve's own minimum is positive even for a flat curve); the interval is Student's t with
S − 1 degrees of freedom on their mean, widened by the spread of the same rise over the evaluation replicates.
With one seed, t* is located on every other evaluation and the rise read from the others (`_split_rise`: the same
honest null), against the curve's own evaluation-to-evaluation jitter. *Transient*: the rise's 95% interval
lies above 0. *Monotone*: the closest approach is in the last `END_FRACTION` of training (still approaching ridge:
t* lies at or past the end) or at the first evaluation (moving away from ridge from the start). *Unresolved*: a
minimum inside the run whose rise is within its noise.

The power law t* ≈ c·M^α is fitted per definition by least squares of ln t* on ln M over the M values the sweep
config names (`sweep.analysis.fit_num_tasks`; default: the transient M), each definition over those of its t*s
that lie inside the run; α's interval refits every bootstrap replicate's t*s, which carries each t*'s uncertainty
and their correlation into α (a replicate's censored t*s are left out of its refit).

Numpy only: no jax, no model.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Iterable, Mapping, Sequence

import numpy as np

from icl_regression import names
from icl_regression.config import ConfigError, parse_num_tasks

# The three definitions of t*, the metric each reads (T_true, mean over positions), and their labels.
RIDGE, LOSS, MIXTURE = "ridge", "loss", "mixture"
DEFINITIONS = (RIDGE, LOSS, MIXTURE)
DEFINITION_KEYS = {RIDGE: names.THRESHOLD_METRIC, LOSS: names.loss_key(names.TRUE, names.PT),
                   MIXTURE: names.mixture_weight_key(names.TRUE)}
DEFINITION_LABELS = {RIDGE: "(a) min Δ_PT,Ridge", LOSS: "(b) min L/D PT", MIXTURE: "(c) a = 1/2"}

# Kinds of M.
TRANSIENT = "transient"
MONOTONE = "monotone"
UNRESOLVED = "unresolved"
NO_DATA = "no data"  # no finite value of the metric after step 0 (e.g. diverged at once)

# Status of one t*.
LOCATED = "located"  # inside the run
AT_END = "at or after the end"  # minimum in the last END_FRACTION of training / a > 1/2 at the end
AT_START = "at or before the first evaluation"  # minimum at the first evaluation after step 0
NEVER = "never"  # (c): a <= 1/2 at every evaluation after step 0
UNDEFINED = "undefined"  # no finite values (for (c): M = ∞, where ridge = dMMSE)

WINDOW_FACTOR = 1.5  # quadratic window: evaluations within this factor of the centre step
MIN_WINDOW = 5  # at least this many evaluations in a quadratic window
END_FRACTION = 0.1  # the last 10% of training: "the end" of a curve
NUM_BOOTSTRAP = 1000  # replicates for the intervals of t*, the rise and α
PER_RUN_BOOTSTRAP = 64  # per run (one seed) the replicates only redraw the stored evaluation replicates
BOOTSTRAP_SEED = 0  # fixed, so that intervals are reproducible
LEVEL = 0.95
MIN_FIT_POINTS = 2  # distinct M values a fit needs (and each bootstrap replicate refitted for α's interval)


def metric_curve(records: Sequence[Mapping], key: str = names.THRESHOLD_METRIC) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of `key`'s mean over positions, sorted by step, one value per step (the last written)."""
    by_step = {}
    for record in records:
        value = record.get("mean", {}).get(key)
        by_step[int(record["step"])] = math.nan if value is None else float(value)
    steps = np.array(sorted(by_step), dtype=np.int64)
    return steps, np.array([by_step[s] for s in steps], dtype=float)


def replicate_curves(records: Sequence[Mapping], key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(steps, [R, steps] values) of `key`'s stored evaluation-sequence replicates; None if any record lacks them."""
    by_step = {}
    for record in records:
        values = record.get("bootstrap", {}).get(key)
        if values is None:
            return None
        by_step[int(record["step"])] = np.array([math.nan if v is None else v for v in values], dtype=float)
    if not by_step or len({len(v) for v in by_step.values()}) != 1:
        return None
    steps = np.array(sorted(by_step), dtype=np.int64)
    return steps, np.stack([by_step[s] for s in steps], axis=1)


# --- Locating t* on one curve. ---


def _windows(steps: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """[B, 2] index ranges [lo, hi) of the evaluations within WINDOW_FACTOR of each center, widened to MIN_WINDOW
    evaluations around the nearest one where fewer."""
    n = len(steps)
    lo = np.searchsorted(steps, centers / WINDOW_FACTOR, side="left")
    hi = np.searchsorted(steps, centers * WINDOW_FACTOR, side="right")
    narrow = hi - lo < min(MIN_WINDOW, n)
    nearest = np.argmin(np.abs(np.log(steps)[None, :] - np.log(centers)[:, None]), axis=1)
    wide_lo = np.clip(nearest - MIN_WINDOW // 2, 0, max(n - MIN_WINDOW, 0))
    lo = np.where(narrow, wide_lo, lo)
    hi = np.where(narrow, np.minimum(n, wide_lo + MIN_WINDOW), hi)
    return np.stack([lo, hi], axis=1)


def _parabola_projection(steps: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, float]:
    """(P [3, window], mean u) with P @ values = (c0, c1, c2) of the least-squares parabola in u − mean u."""
    u = np.log(steps[lo:hi].astype(float))
    centred = u - u.mean()
    return np.linalg.pinv(np.stack([np.ones_like(u), centred, centred**2], axis=1)), float(u.mean())


def _vertices(steps: np.ndarray, curves: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """[B] vertex steps of each curve's least-squares parabola (in ln step) over its window; NaN where the parabola
    is not convex, the vertex lies outside the window, or the window has fewer than 3 evaluations."""
    out = np.full(len(curves), math.nan)
    u = np.log(steps.astype(float))
    for lo, hi in np.unique(windows, axis=0):
        if hi - lo < 3:
            continue
        rows = np.flatnonzero((windows[:, 0] == lo) & (windows[:, 1] == hi))
        projection, u_mean = _parabola_projection(steps, lo, hi)
        _, c1, c2 = projection @ curves[rows, lo:hi].T
        with np.errstate(divide="ignore", invalid="ignore"):
            vertex = u_mean - c1 / (2 * c2)
        ok = (c2 > 0) & (vertex >= u[lo]) & (vertex <= u[hi - 1])
        out[rows[ok]] = np.exp(vertex[ok])
    return out


def fit_value_weights(steps: np.ndarray, window: np.ndarray, at: float) -> np.ndarray:
    """w with w·values[window] = the least-squares parabola (in ln step) over `window`, evaluated at step `at`."""
    projection, u_mean = _parabola_projection(steps, int(window[0]), int(window[-1]) + 1)
    offset = math.log(at) - u_mean
    return np.array([1.0, offset, offset**2]) @ projection


def end_mask(steps: np.ndarray) -> np.ndarray:
    """The evaluations in the last END_FRACTION of training (at least the last two)."""
    mask = steps >= (1 - END_FRACTION) * steps[-1]
    mask[-min(2, len(steps)):] = True
    return mask


def locate_minima(steps: np.ndarray, curves: np.ndarray) -> dict:
    """t* of each curve [B, T] to minimise (steps > 0, all finite): {t_star [B], status [B], grid_step [B],
    windows [B, 2]}. The local parabola is fitted around the grid argmin, then once more around its vertex."""
    best = np.argmin(curves, axis=1)
    grid = steps[best].astype(float)
    status = np.full(len(curves), LOCATED, dtype=object)
    status[best == 0] = AT_START
    status[end_mask(steps)[best]] = AT_END
    windows = np.stack([best, best + 1], axis=1)
    t_star = grid.copy()
    located = np.flatnonzero(status == LOCATED)
    if len(located):
        first = _vertices(steps, curves[located], _windows(steps, grid[located]))
        centers = np.where(np.isfinite(first), first, grid[located])
        windows[located] = _windows(steps, centers)
        final = _vertices(steps, curves[located], windows[located])
        t_star[located] = np.where(np.isfinite(first) & np.isfinite(final), final, grid[located])
    return {"t_star": t_star, "status": status, "grid_step": steps[best], "windows": windows}


def locate_minimum(steps: np.ndarray, values: np.ndarray) -> dict:
    """t* of one curve to minimise (steps > 0, all finite): {t_star, status, window (indices), grid_step}."""
    if not len(steps):
        return {"t_star": math.nan, "status": UNDEFINED, "window": np.array([], int), "grid_step": math.nan}
    result = locate_minima(steps, values[None, :])
    lo, hi = result["windows"][0]
    return {"t_star": float(result["t_star"][0]), "status": result["status"][0], "window": np.arange(lo, hi),
            "grid_step": int(result["grid_step"][0])}


def locate_crossings(steps: np.ndarray, curves: np.ndarray, level: float = 0.5) -> dict:
    """t* where each ridge-weight curve [B, T] (steps > 0, all finite) falls through `level` for the last time:
    {t_star [B], status [B]}."""
    num, n = curves.shape
    t_star, status = np.full(num, math.nan), np.full(num, LOCATED, dtype=object)
    if n == 0:
        status[:] = UNDEFINED
        return {"t_star": t_star, "status": status}
    above = curves > level
    last = n - 1 - np.argmax(above[:, ::-1], axis=1)  # the last evaluation above the level
    status[~above.any(axis=1)] = NEVER
    status[above[:, -1]] = AT_END
    t_star[above[:, -1]] = float(steps[-1])
    rows = np.flatnonzero(status == LOCATED)
    if not len(rows):
        return {"t_star": t_star, "status": status}
    u = np.log(steps.astype(float))
    i = last[rows]
    lo = np.searchsorted(steps, steps[i] / WINDOW_FACTOR, side="left")
    hi = np.searchsorted(steps, steps[i + 1] * WINDOW_FACTOR, side="right")
    values_i, values_next = curves[rows, i], curves[rows, i + 1]
    root = u[i] + (values_i - level) / (values_i - values_next) * (u[i + 1] - u[i])  # between the bracket
    for window in np.unique(np.stack([lo, hi], axis=1), axis=0):
        group = np.flatnonzero((lo == window[0]) & (hi == window[1]))
        if window[1] - window[0] < 3:
            continue
        x = u[window[0]:window[1]]
        slope, intercept = np.polyfit(x, curves[rows[group], window[0]:window[1]].T, 1)
        falling = slope < 0
        root[group[falling]] = (level - intercept[falling]) / slope[falling]
    t_star[rows] = np.exp(np.clip(root, u[i], u[i + 1]))
    return {"t_star": t_star, "status": status}


def locate_crossing(steps: np.ndarray, weights: np.ndarray, level: float = 0.5) -> dict:
    """t* where the ridge weight a falls through `level` for the last time (steps > 0; NaN weights ignored)."""
    ok = np.isfinite(weights)
    result = locate_crossings(steps[ok], weights[ok][None, :], level)
    return {"t_star": float(result["t_star"][0]), "status": result["status"][0]}


def locate(definition: str, steps: np.ndarray, values: np.ndarray) -> dict:
    """t* of one curve (step 0 and non-finite values left out) by `definition`."""
    keep = (steps > 0) & np.isfinite(values)
    if definition == MIXTURE:
        return locate_crossing(steps[keep], values[keep])
    return locate_minimum(steps[keep], values[keep])


def locate_all(definition: str, steps: np.ndarray, curves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(t* [B], status [B]) of curves [B, T] by `definition` (minima: all curves at once)."""
    keep = (steps > 0) & np.all(np.isfinite(curves), axis=0)
    if not keep.any():
        return np.full(len(curves), math.nan), np.full(len(curves), UNDEFINED, dtype=object)
    locate_fn = locate_crossings if definition == MIXTURE else locate_minima
    result = locate_fn(steps[keep], curves[:, keep])
    return result["t_star"], result["status"]


# --- Curves of a group of seeds, and their bootstrap replicates. ---


class GroupCurves:
    """The seeds of one (M, budget): their curves of each definition's metric at the steps every seed evaluated,
    and the stored evaluation-sequence replicates when every run has them."""

    def __init__(self, metrics_by_run: Mapping[str, Sequence[Mapping]], run_names: Sequence[str],
                 seeds: Sequence[int]):
        self.run_names, self.seeds = list(run_names), list(seeds)  # each run's seed, in the runs' order
        records = [metrics_by_run.get(name, []) for name in self.run_names]
        step_sets = [set(metric_curve(r)[0].tolist()) for r in records]
        self.steps = np.array(sorted(set.intersection(*step_sets)) if step_sets else [], dtype=np.int64)
        self.curves, self.replicates = {}, {}  # key: [S, T] and [S, R, T]
        for key in set(DEFINITION_KEYS.values()):
            self.curves[key] = np.stack([_at(metric_curve(r, key), self.steps) for r in records]) \
                if records else np.zeros((0, len(self.steps)))
            reps = [replicate_curves(r, key) for r in records]
            if records and all(rep is not None for rep in reps) and len({rep[1].shape[0] for rep in reps}) == 1:
                self.replicates[key] = np.stack([np.stack([_at((rep[0], row), self.steps) for row in rep[1]])
                                                 for rep in reps])
        self.num_replicates = (min(v.shape[1] for v in self.replicates.values())
                               if len(self.replicates) == len(self.curves) else 0)

    @property
    def num_seeds(self) -> int:
        return len(self.run_names)

    def mean_curve(self, key: str) -> np.ndarray:
        return np.mean(self.curves[key], axis=0)

    def bootstrap_curves(self, key: str, seed_draws: np.ndarray, replicate_draws: np.ndarray) -> np.ndarray:
        """[B, T]: per replicate b, the mean over the seeds drawn for it of their curves on evaluation replicate
        `replicate_draws[b]` (or of their curves themselves when no replicates are stored). `seed_draws`: [B, n]
        indices into this group's runs (each drawn seed once), or [B, S] float weights, one per run
        (`BootstrapDraws.seeds_for`)."""
        if seed_draws.dtype.kind == "f":  # weights: the group lacks some of the budget's seeds
            values = (self.replicates[key][:, replicate_draws % self.num_replicates] if self.num_replicates
                      else np.broadcast_to(self.curves[key][:, None], (self.num_seeds, len(seed_draws),
                                                                       len(self.steps))))
            return np.einsum("bs,sbt->bt", seed_draws, values) / seed_draws.sum(axis=1, keepdims=True)
        if self.num_replicates:
            chosen = self.replicates[key][seed_draws, replicate_draws[:, None] % self.num_replicates]
        else:
            chosen = self.curves[key][seed_draws]
        return chosen.mean(axis=1)

    def noise_note(self) -> str:
        """What the t* intervals resample."""
        seeds = f"{self.num_seeds} seeds"
        if self.num_replicates and self.num_seeds > 1:
            return f"bootstrap over {seeds} × {self.num_replicates} evaluation-sequence replicates"
        if self.num_replicates:
            return (f"bootstrap over evaluation sequences only ({self.num_replicates} replicates; one seed, so no "
                    "seed spread)")
        if self.num_seeds > 1:
            return f"bootstrap over {seeds} only (the runs stored no per-evaluation replicates)"
        return "none (one seed, and the runs stored no per-evaluation replicates)"


def _at(curve: tuple[np.ndarray, np.ndarray], steps: np.ndarray) -> np.ndarray:
    lookup = dict(zip(curve[0].tolist(), curve[1]))
    return np.array([lookup.get(s, math.nan) for s in steps.tolist()], dtype=float)


def censored(t_star: np.ndarray, status: np.ndarray) -> np.ndarray:
    """Replicate t*s as what they say about t*: +inf where it lies at or past the end of the run, 0 where it lies
    at or before the first evaluation (or, for (c), a is below 1/2 throughout), NaN where undefined. An interval
    over them then opens where more than its tail of replicates is censored, instead of stopping at the grid's
    edge, and power-law refits leave the censored replicates out."""
    out = np.asarray(t_star, float).copy()
    out[status == AT_END] = math.inf
    out[(status == AT_START) | (status == NEVER)] = 0.0
    out[status == UNDEFINED] = math.nan
    return out


def _percentile_interval(values: np.ndarray) -> list[float]:
    """The central LEVEL interval (linear between order statistics), ±inf allowed; NaN dropped."""
    values = np.sort(np.asarray(values, float)[~np.isnan(values)])
    if len(values) < 2:
        return [math.nan, math.nan]
    tail = (1 - LEVEL) / 2
    if np.all(np.isfinite(values)):
        return [float(np.percentile(values, 100 * tail)), float(np.percentile(values, 100 * (1 - tail)))]
    out = []
    for q in (tail, 1 - tail):
        h = (len(values) - 1) * q
        i = int(math.floor(h))
        a, b = values[i], values[min(i + 1, len(values) - 1)]
        out.append(float(a if h == i or a == b else a + (h - i) * (b - a)))
    return out


class BootstrapDraws:
    """Which seeds and which evaluation replicate each bootstrap replicate uses; one draw shared by every group of a
    budget, so that the replicates of different M are the same resample: replicate b draws seeds (by their value)
    from all the budget's seeds, and every M averages the drawn seeds it has."""

    def __init__(self, seeds: Iterable[int], num_bootstrap: int = NUM_BOOTSTRAP, seed: int = BOOTSTRAP_SEED):
        self.seeds = sorted(set(seeds))
        rng = np.random.default_rng(seed)
        self.uniforms = rng.random((num_bootstrap, len(self.seeds)))
        self.replicates = rng.integers(0, 2**31, size=num_bootstrap)
        self.draws = np.floor(self.uniforms * len(self.seeds)).astype(int)  # [B, n]: positions in self.seeds

    def seeds_for(self, group_seeds: Sequence[int]) -> np.ndarray:
        """For a group with runs of `group_seeds`: [B, n] indices into its runs when it has all the budget's seeds
        (in order), else [B, S] weights (how often each of its seeds was drawn; a replicate that drew none of them
        draws among the group's own seeds instead, uniformly by the same uniforms)."""
        group_seeds = list(group_seeds)
        if group_seeds == self.seeds:
            return self.draws
        position = {s: i for i, s in enumerate(self.seeds)}
        counts = np.stack([(self.draws == position[s]).sum(axis=1) if s in position else np.zeros(len(self.draws),
                                                                                                   int)
                           for s in group_seeds], axis=1).astype(float)
        none = counts.sum(axis=1) == 0
        own = np.floor(self.uniforms[none, :1] * len(group_seeds)).astype(int)[:, 0]
        counts[np.flatnonzero(none), own] = 1.0
        return counts


# --- One group: t* three ways with intervals, the kind and its reason. ---


def analyse_group(group: GroupCurves, draws: BootstrapDraws) -> dict:
    """t* by each definition (value, status, interval, bootstrap replicates), and the kind of the group."""
    seed_draws = draws.seeds_for(group.seeds)
    out = {"num_seeds": group.num_seeds, "noise": group.noise_note(), "t_star": {}}
    has_interval = group.num_seeds > 1 or group.num_replicates > 0
    steps = group.steps
    for definition in DEFINITIONS:
        key = DEFINITION_KEYS[definition]
        point = locate(definition, steps, group.mean_curve(key))
        entry = {"value": point["t_star"], "status": point["status"], "interval": [math.nan, math.nan],
                 "replicates": []}
        if point["status"] == LOCATED and has_interval:
            reps, statuses = locate_all(definition, steps, group.bootstrap_curves(key, seed_draws, draws.replicates))
            reps = censored(reps, statuses)
            entry["replicates"] = reps.tolist()
            entry["interval"] = _percentile_interval(reps)
            entry["replicates_located"] = int(np.sum(statuses == LOCATED))
        out["t_star"][definition] = entry
    out.update(_kind(group))
    out["weight"] = _weight_summary(steps, group.mean_curve(DEFINITION_KEYS[MIXTURE]))
    return out


def _weight_summary(steps: np.ndarray, weights: np.ndarray) -> dict:
    """The seed-mean ridge weight a: its peak after step 0 (where), and its mean over the end of training."""
    keep = (steps > 0) & np.isfinite(weights)
    if not keep.any():
        return {"peak": math.nan, "peak_step": math.nan, "final": math.nan}
    steps, weights = steps[keep], weights[keep]
    best = int(np.argmax(weights))
    return {"peak": float(weights[best]), "peak_step": int(steps[best]),
            "final": float(np.mean(weights[end_mask(steps)]))}


def student_t_quantile(dof: float, level: float = LEVEL) -> float:
    """The two-sided `level` quantile of Student's t: exact for 1 and 2 degrees of freedom, Cornish-Fisher beyond
    (0.8% low at 3, 0.3% at 4, under 0.1% from 6 on); the normal quantile for dof = inf."""
    z = float(np.sqrt(2) * _erfinv(level))
    if math.isinf(dof):
        return z
    p = (1 + level) / 2
    if dof == 1:
        return math.tan(math.pi * (p - 0.5))
    if dof == 2:
        return (2 * p - 1) * math.sqrt(2 / (4 * p * (1 - p)))
    return (z + (z**3 + z) / (4 * dof) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * dof**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * dof**3))


def _erfinv(y: float) -> float:
    """Inverse error function by Newton's method on math.erf (no scipy in this module)."""
    x = 0.0
    for _ in range(60):
        x -= (math.erf(x) - y) / (2 / math.sqrt(math.pi) * math.exp(-x * x))
    return x


def _jitter(values: np.ndarray) -> float:
    """The evaluation-to-evaluation noise of one curve: robust SD of successive differences, / √2."""
    diffs = np.diff(values)
    return float(1.4826 * np.median(np.abs(diffs - np.median(diffs))) / math.sqrt(2)) if len(diffs) > 2 else math.nan


def _rise(curves: np.ndarray, at_end: np.ndarray, point: dict, steps: np.ndarray) -> np.ndarray:
    """[...]: mean over the end of training minus the local fit's value at t* (a linear function of each curve)."""
    weights = fit_value_weights(steps, point["window"], point["t_star"])
    return curves[..., at_end].mean(axis=-1) - curves[..., point["window"]] @ weights


def _split_rise(steps: np.ndarray, values: np.ndarray, at_end: np.ndarray, point: dict) -> tuple[float, float]:
    """One seed's rise and its variance, measured where its own jitter did not choose t*: t* is located on every
    other evaluation (the even ones) and the value there read from the local fit to the others (the odd ones),
    so that the minimum's selection bias (a flat curve's lowest dip) does not count as a rise; the jitter is
    independent between evaluations. Falls back to the whole curve's t* when the even evaluations place it at an
    end, and to the whole curve's fit when too few odd evaluations remain."""
    inner = ~at_end
    even, odd = np.flatnonzero(inner)[::2], np.flatnonzero(inner)[1::2]
    where = locate_minimum(steps[even], values[even]) if len(even) >= 3 else {"status": UNDEFINED}
    t_star = where["t_star"] if where["status"] == LOCATED else point["t_star"]
    if len(odd) >= 3:
        window = np.arange(*_windows(steps[odd], np.array([t_star]))[0])
        weights = fit_value_weights(steps[odd], window, t_star)
        at_t_star = float(values[odd][window] @ weights)
    else:
        weights = fit_value_weights(steps, point["window"], point["t_star"])
        at_t_star = float(values[point["window"]] @ weights)
    rise = float(values[at_end].mean()) - at_t_star
    return rise, _jitter(values) ** 2 * (1 / at_end.sum() + float(weights @ weights))


RISE_NOISE_SEEDS = ("Student t over seeds, each seed's rise measured at the t* of the others, widened by the "
                    "evaluation-sequence replicates")
RISE_NOISE_ONE = ("one seed: t* located on every other evaluation, the rise read from the others, against the "
                  "curve's own evaluation-to-evaluation jitter, widened by any evaluation replicates")


def _kind(group: GroupCurves) -> dict:
    """Transient / monotone / unresolved from the rise of Δ after t* (a), against its noise.

    With S >= 2 seeds each seed's rise is measured at the t* located on the mean of the *other* seeds (so no seed
    is measured where its own jitter happened to dip: an honest null of zero), and the interval is Student's t with
    S − 1 degrees of freedom on their mean (a bootstrap over three seeds would be far too narrow), widened by the
    evaluation-sequence replicates' spread of the same rise. With one seed, the noise is the curve's own jitter.
    """
    key = DEFINITION_KEYS[RIDGE]
    keep = (group.steps > 0) & np.all(np.isfinite(group.curves[key]), axis=0)
    steps, curves = group.steps[keep], group.curves[key][:, keep]
    if not len(steps):
        return {"kind": NO_DATA, "reason": "no finite Δ after step 0", "rise": math.nan,
                "rise_interval": [math.nan, math.nan], "min_value": math.nan, "final_value": math.nan}
    mean = curves.mean(axis=0)
    point = locate_minimum(steps, mean)
    at_end = end_mask(steps)
    base = {"min_value": float(np.min(mean)), "final_value": float(np.mean(mean[at_end])), "rise": math.nan,
            "rise_interval": [math.nan, math.nan]}
    end_start = int(steps[at_end][0])  # the window holds at least the last two evaluations, so say where it starts
    end_label = (f"the end (steps {end_start:,} to {int(steps[-1]):,}, the last "
                 f"{round(100 * (1 - end_start / steps[-1]))}% of training)")
    if point["status"] == AT_END:
        return {**base, "kind": MONOTONE,
                "reason": f"closest to ridge at step {point['grid_step']:,}, in {end_label}: still approaching ridge"}
    if point["status"] == AT_START:
        return {**base, "kind": MONOTONE,
                "reason": f"closest to ridge at the first evaluation (step {steps[0]:,}): moving away from ridge "
                          "from the start"}
    num_seeds = len(curves)
    if num_seeds >= 2:
        rises = []
        for s in range(num_seeds):
            others = locate_minimum(steps, np.delete(curves, s, axis=0).mean(axis=0))
            rises.append(float(_rise(curves[s], at_end, others if others["status"] == LOCATED else point, steps)))
        rise, seed_var, dof = float(np.mean(rises)), float(np.var(rises, ddof=1)) / num_seeds, num_seeds - 1
    else:
        rise, seed_var = _split_rise(steps, mean, at_end, point)
        dof = math.inf
    eval_var = 0.0
    if group.num_replicates:
        replicate_curves = group.replicates[key][:, :, keep].mean(axis=0)  # [R, T]: seed mean per replicate
        eval_var = float(np.var(_rise(replicate_curves, at_end, point, steps), ddof=1))
    half = student_t_quantile(dof) * math.sqrt(seed_var + eval_var)
    lo, hi = rise - half, rise + half
    base.update(rise=rise, rise_interval=[lo, hi], rise_noise=RISE_NOISE_SEEDS if num_seeds >= 2 else RISE_NOISE_ONE)
    text = f"Δ rises by {rise:.3g} [{lo:.3g}, {hi:.3g}] from t* to {end_label}"
    if lo > 0:
        return {**base, "kind": TRANSIENT, "reason": text}
    return {**base, "kind": UNRESOLVED, "reason": text + ": within its noise"}


# --- Per run, per M, and the power laws. ---


def _budget_label(batch_size: int, steps: int) -> str:
    return f"B={batch_size}_N={steps}"


def _strip(analysis: dict) -> dict:
    """An analysis without its bootstrap replicates (for the summary)."""
    out = dict(analysis)
    out["t_star"] = {d: {k: v for k, v in e.items() if k != "replicates"} for d, e in analysis["t_star"].items()}
    return out


def per_run_dynamics(metrics_by_run: Mapping[str, Sequence[Mapping]], rows: Sequence[Mapping],
                     num_bootstrap: int = NUM_BOOTSTRAP) -> list[dict]:
    """One entry per row: its sweep values and its own t*s and kind (evaluation-sequence noise only)."""
    draws = BootstrapDraws([0], num_bootstrap)  # one seed: the replicates are the stored evaluation replicates
    out = []
    for row in rows:
        group = GroupCurves(metrics_by_run, [row["name"]], [0])
        entry = {k: row[k] for k in ("name", "num_tasks", "batch_size", "steps", "seed")}
        entry["status"] = row.get("status", names.DONE)
        entry["eval_interval"] = int(np.min(np.diff(group.steps))) if len(group.steps) > 1 else None
        entry["final_weight"] = float(group.mean_curve(DEFINITION_KEYS[MIXTURE])[-1]) if len(group.steps) \
            else math.nan
        entry.update(_strip(analyse_group(group, draws)))
        out.append(entry)
    return out


def _groups(rows: Sequence[Mapping]) -> dict:
    """{(batch, steps): {M: [(seed, run name)] by seed}} over the finished, not diverged runs."""
    grouped = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if row.get("status", names.DONE) == names.DONE:
            grouped[(row["batch_size"], row["steps"])][row["num_tasks"]].append((row["seed"], row["name"]))
    for (batch, steps), by_m in grouped.items():
        for m, runs in by_m.items():
            seeds = [seed for seed, _ in runs]
            if len(set(seeds)) < len(seeds):
                raise ValueError(f"M={m}, B={batch}, N={steps}: several runs of one seed ({sorted(runs)}), i.e. "
                                 "cells of different settings; analyse each setting's rows separately")
    return {budget: {m: sorted(runs) for m, runs in by_m.items()} for budget, by_m in grouped.items()}


def _finite_sorted(values) -> list:
    return sorted(values, key=lambda m: m if m > 0 else math.inf)


def fit_power_law(num_tasks: Sequence[float], t_star: Sequence[float],
                  replicates: Sequence[Sequence[float]] | None = None) -> dict:
    """t* ≈ prefactor · M^α by least squares on log-log axes; α's interval from the bootstrap replicates of the
    t*s (`replicates[i]`: the replicates of t_star[i], aligned across i), when given."""
    m, t = np.asarray(num_tasks, float), np.asarray(t_star, float)
    ok = np.isfinite(m) & np.isfinite(t) & (m > 0) & (t > 0)
    fit = {"alpha": math.nan, "alpha_interval": [math.nan, math.nan], "prefactor": math.nan,
           "num_points": int(ok.sum()), "num_tasks": [float(x) for x in m[ok]], "t_star": [float(x) for x in t[ok]],
           "replicates_fitted": 0}
    if len(np.unique(m[ok])) < MIN_FIT_POINTS:
        fit["note"] = f"{int(ok.sum())} M value(s) with a t* inside the run: at least {MIN_FIT_POINTS} are needed"
        return fit
    alpha, intercept = np.polyfit(np.log(m[ok]), np.log(t[ok]), 1)
    fit.update(alpha=float(alpha), prefactor=float(math.exp(intercept)), note="")
    if replicates is not None:
        reps = np.asarray(replicates, float)[ok]  # [points, B]
        slopes = []
        for column in reps.T:
            good = np.isfinite(column) & (column > 0)
            if len(np.unique(m[ok][good])) >= MIN_FIT_POINTS:
                slopes.append(np.polyfit(np.log(m[ok][good]), np.log(column[good]), 1)[0])
        fit["alpha_interval"] = _percentile_interval(np.array(slopes))
        fit["replicates_fitted"] = len(slopes)
    return fit


ANALYSIS_FIELDS = ("fit_num_tasks",)  # the fields of a sweep config's `sweep.analysis` section


def analysis_settings(sweep_config: Mapping | None) -> dict:
    """`summarize_dynamics`'s keyword arguments from a sweep config's `sweep.analysis` section (absent: defaults).

    The section sits beside `sweep.grid`; `sweep.expand` reads only the grid, so analysis settings never change a
    run or its name.
    """
    analysis = dict(((sweep_config or {}).get("sweep") or {}).get("analysis") or {})
    unknown = sorted(set(analysis) - set(ANALYSIS_FIELDS))
    if unknown:
        raise ConfigError(f"unknown sweep.analysis field(s) {unknown}; allowed: {list(ANALYSIS_FIELDS)}")
    values = analysis.get("fit_num_tasks") or ()
    values = [values] if isinstance(values, (int, str)) else list(values)
    fit_num_tasks = tuple(parse_num_tasks(m) for m in values)
    if any(m == 0 for m in fit_num_tasks):
        raise ConfigError(f"sweep.analysis.fit_num_tasks={tuple(values)} names M = ∞; allowed: finite M values "
                          "(t* ∝ M^α has no point at M = ∞)")
    return {"fit_num_tasks": fit_num_tasks}


def summarize_dynamics(metrics_by_run: Mapping[str, Sequence[Mapping]], rows: Sequence[Mapping],
                       fit_num_tasks: Sequence | None = None, num_bootstrap: int = NUM_BOOTSTRAP) -> dict:
    """{"dynamics": {per_run, per_num_tasks, power_law, power_law_by_budget, ...}} for a sweep summary.

    `fit_num_tasks`: the M values of the power-law fits (None or empty: the transient M of each budget).
    `power_law` is the largest data budget's (batch × steps: the longest look at each curve, where late turns are
    least likely to be cut off); every budget's is in `power_law_by_budget`. Both map each definition to its fit.
    """
    per_run = per_run_dynamics(metrics_by_run, rows, num_bootstrap=min(num_bootstrap, PER_RUN_BOOTSTRAP))
    per_num_tasks, by_budget = [], {}
    budgets = sorted(_groups(rows).items(), key=lambda item: (item[0][0] * item[0][1], item[0]))
    for (batch, steps), by_m in budgets:
        draws = BootstrapDraws({seed for runs in by_m.values() for seed, _ in runs}, num_bootstrap)
        analyses = {}
        for m in _finite_sorted(by_m):
            seeds, run_names = [seed for seed, _ in by_m[m]], [name for _, name in by_m[m]]
            analyses[m] = analyse_group(GroupCurves(metrics_by_run, run_names, seeds), draws)
            per_num_tasks.append({"num_tasks": m, "batch_size": batch, "steps": steps, "runs": run_names,
                                  **_strip(analyses[m])})
        by_budget[_budget_label(batch, steps)] = {"batch_size": batch, "steps": steps,
                                                  **_budget_fits(analyses, fit_num_tasks)}
    if by_budget:
        power_law = by_budget[list(by_budget)[-1]]
    else:
        power_law = {"batch_size": None, "steps": None, **_budget_fits({}, fit_num_tasks)}
        power_law["note"] = "no finished run with a finite Δ after step 0"
    return {"dynamics": {"metrics": DEFINITION_KEYS, "definitions": DEFINITION_LABELS,
                         "window_factor": WINDOW_FACTOR, "end_fraction": END_FRACTION, "num_bootstrap": num_bootstrap,
                         "per_run": per_run, "per_num_tasks": per_num_tasks, "power_law": power_law,
                         "power_law_by_budget": by_budget}}


def _budget_fits(analyses: Mapping[int, dict], fit_num_tasks: Sequence | None) -> dict:
    """{"fit_set": how the M were chosen, "fit_num_tasks": those M, definition: fit} for one budget."""
    finite = [m for m in analyses if m > 0]
    if fit_num_tasks:
        wanted = {int(m) for m in fit_num_tasks}
        chosen, how = [m for m in finite if m in wanted], "named in sweep.analysis.fit_num_tasks"
        missing = sorted(wanted - set(finite))
        if missing:
            how += f" ({missing} not in this budget's runs)"
    else:
        chosen, how = [m for m in finite if analyses[m]["kind"] == TRANSIENT], "the transient M"
    out = {"fit_set": how, "fit_num_tasks": chosen}
    for definition in DEFINITIONS:
        points = [(m, analyses[m]["t_star"][definition]) for m in chosen
                  if analyses[m]["t_star"][definition]["status"] == LOCATED]
        with_reps = points and all(len(e["replicates"]) for _, e in points)
        fit = fit_power_law([m for m, _ in points], [e["value"] for _, e in points],
                            [e["replicates"] for _, e in points] if with_reps else None)
        left_out = [m for m in chosen if analyses[m]["t_star"][definition]["status"] != LOCATED]
        notes = [fit["note"]] if fit["note"] else []
        if left_out:
            notes.append(f"left out (t* not inside the run): M = {left_out}")
        if not chosen:
            notes = ["no transient M in this sweep"] if not fit_num_tasks else ["no named M in this budget"]
        fit["note"] = "; ".join(notes)
        out[definition] = fit
    return out


# --- Text. ---


def _step_text(entry: Mapping) -> str:
    value, status = entry["value"], entry["status"]
    if status == AT_END:
        return f"≥ {value:,.0f}"
    if status == AT_START:
        return f"≤ {value:,.0f}"
    if status in (NEVER, UNDEFINED):
        return "never (a ≤ 1/2)" if status == NEVER else "—"
    lo, hi = entry["interval"]
    bound = lambda x: "past the end" if x == math.inf else f"{x:,.0f}"  # noqa: E731
    interval = f" [{bound(lo)}, {bound(hi)}]" if not math.isnan(lo) else ""
    return f"{value:,.0f}{interval}"


def format_dynamics(dynamics: Mapping) -> str:
    """Per M and budget: t* by the three definitions with intervals and the kind with its reason; then α by each
    definition with its interval, or one sentence where no M is transient."""
    dyn = dynamics.get("dynamics", dynamics)
    if "definitions" not in dyn:
        return "training dynamics: this summary predates t* three ways; run --summarize again"
    width = 28  # fits "12,345 [6,789, past the end]" after a space
    lines = ["training dynamics on T_true (t* located between evaluations by a local fit, with 95% intervals; "
             "≤: lowest at the first evaluation, ≥: lowest at the end, still falling):",
             f"{'M':>6} {'B':>5} {'steps':>7} {'seeds':>5}  {'kind':<11}"
             + "".join(f" {DEFINITION_LABELS[d]:>{width}}" for d in DEFINITIONS)]
    for p in dyn["per_num_tasks"]:
        lines.append(f"{_m_label(p):>6} {p['batch_size']:>5} {p['steps']:>7} {p['num_seeds']:>5}  {p['kind']:<11}"
                     + "".join(f" {_step_text(p['t_star'][d]):>{width}}" for d in DEFINITIONS))
    lines.append("why:")
    for p in dyn["per_num_tasks"]:
        weight = p.get("weight", {})
        mixture = (f"; ridge weight a peaks at {weight['peak']:.2f} (step {weight['peak_step']:,}), ends at "
                   f"{weight['final']:.2f}" if math.isfinite(weight.get("peak", math.nan)) else "")
        lines.append(f"  M={_m_label(p)}, B={p['batch_size']}: {p['kind']}: {p['reason']}{mixture}")
    for note in sorted({p["noise"] for p in dyn["per_num_tasks"]}):
        lines.append(f"t* intervals: {note}")
    for note in sorted({p["rise_noise"] for p in dyn["per_num_tasks"] if p.get("rise_noise")}):
        lines.append(f"rise intervals: {note}")
    budgets = dyn["power_law_by_budget"]
    if budgets and not any(b["fit_num_tasks"] for b in budgets.values()):
        named = any(b["fit_set"] != "the transient M" for b in budgets.values())
        lines.append("power law t* ∝ M^α: " + ("none of the named M values is in this sweep" if named
                                               else "no transient M in this sweep") + ", so no fit")
        return "\n".join(lines)
    for label, budget in budgets.items():
        lines.append(f"power law t* ∝ M^α, {label}, fit over {budget['fit_set']}: "
                     + (", ".join(str(m) for m in budget["fit_num_tasks"]) or "none"))
        for definition in DEFINITIONS:
            fit = budget[definition]
            if math.isfinite(fit["alpha"]):
                lo, hi = fit["alpha_interval"]
                interval = f"[{lo:.2f}, {hi:.2f}]" if math.isfinite(lo) else "(no interval)"
                text = f"α = {fit['alpha']:.2f} {interval}, {fit['num_points']} points"
            else:
                text = "no fit"
            note = f"; {fit['note']}" if fit["note"] else ""
            lines.append(f"  {DEFINITION_LABELS[definition]:<20} {text}{note}")
    return "\n".join(lines)


def _m_label(point: Mapping) -> str:
    return "inf" if point["num_tasks"] <= 0 else str(point["num_tasks"])
