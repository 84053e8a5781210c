"""The task-diversity threshold M*, read from stored sweep results, with intervals over what varies.

Both estimates are the zero of a *signed curve* s(x) over x = log2 M (finite M only), linearly interpolated between
the grid's M values (SPEC.md, "The threshold"):
- crossing, the paper's definition. For two data budgets b < b' that differ in one coordinate (batch B vs 2B at
  the same steps, or steps N vs 2N at the same batch: `budget_pairs`) with
  Δ = Δ^{T_true}_{PT,Ridge}: s(x) = Δ_b'(x) − Δ_b(x), the paired difference of the two budgets. Below M* more data
  moves the model away from ridge (s > 0), above it towards ridge (s < 0). The zero of the interpolated s is where
  the two interpolated Δ curves intersect.
- midpoint, one budget: s(x) = Δ^{T_true}_{PT,Ridge}(x) − Δ^{T_true}_{PT,dMMSE}(x). M* is where the model is as
  far from ridge as from dMMSE on new tasks (Δ are mean squared distances; equal Δ means equal root-mean-square
  distances): closer to dMMSE below (s > 0), closer to ridge above (s < 0). With a = PT − ridge and b = dMMSE −
  ridge (functions of the sequence), s = 2⟨a, b⟩ − ⟨b, b⟩: s > 0 exactly when the model's deviation from ridge,
  projected on the ridge → dMMSE direction, reaches past half-way. Error orthogonal to that direction (the model's
  own inaccuracy) cancels, so the midpoint stays meaningful where dMMSE and ridge nearly agree (large M).

Which sign change is M*. Every sign change of the seed-mean curve is reported, each with its own interval (a value
exactly 0 takes the sign before it: touching zero is no change). M* is
the split of the grid into a "+" side (small M) and a "−" side (large M) that the evidence favours: with each grid
point weighted by z_j = s_j / se_j (se_j: its standard error over seeds and evaluation sequences), the split after
point i maximising Σ_{j≤i} z_j − Σ_{j>i} z_j over i = −1 … X−1. A maximum inside the grid always sits at a + → −
sign change (the sum rises while z_j > 0 and falls while z_j < 0), and M* is the zero interpolated there.
Differences well inside their own standard error weigh little: they act as ties, decided by the statistics rather
than by a fixed tolerance. When the best split is at an end of the grid (every point, weighed together, says −, or
says +), M* lies below the sweep's smallest M or above its largest: −inf or +inf.

Interval. What varies between two trainings of one cell is the seed (init, pool, data draws); the estimate is also
read from a finite set of evaluation sequences. A replicate perturbs the seed-mean curve s̄ by
- an evaluation part: each run's stored bootstrap replicate r minus its final value, averaged over seeds.
  `evaluation.bootstrap_indices` gives every run the same resampled sequences for replicate r (and T_true's
  sequences are shared by every model), so replicate r of every run and metric is one resampling of one set.
  With several seeds it is shrunk to the part of the evaluation error that all runs share: the part particular
  to each run already shows in the spread between seeds (`_shared_fraction`);
- a seed part: Σ_s w_s (s_s − s̄), one weight per seed shared by every M and both budgets of that seed (a seed's
  B / 2B, or N / 2N, cells stay paired), w_s = g_s · sqrt(ν / u) / sqrt(n (n − 1)) with g_s ~ N(0, 1),
  u ~ χ²_ν, ν = n − 1 for n seeds.
  An M where fewer seeds finished (a diverged run drops its pair) has its own ν = n_M − 1 (its χ² drawn from
  the curve's by a beta split, so the M stay correlated); with one seed there, where the others have several,
  its seed spread is unknown and it is left out of the estimate (the summary's `interval_source` names such M).
At each M the seed part is then the standard error times a Student-t_ν draw, so the percentile interval of the
zero reproduces the Fieller (test-inversion) interval of the interpolated curve: it covers the true crossing in
95% of sweeps when seed effects are normal, as a wild bootstrap over seeds calibrated for their small number.
Resampling seeds with replacement would undercover with few seeds (n = 3: ten distinct resamples, spread shrunk by
sqrt((n − 1)/n) and normal instead of t quantiles); tests/test_threshold.py measures the coverage of both.
The interval is the 2.5th and 97.5th percentile of the replicates' M* (each found by the same rule), so it may
reach past the grid (−inf / +inf). With one seed there is no seed part: the interval covers evaluation noise only,
not the threshold's uncertainty, and every summary says so (`interval_source`).

Numpy only: no jax, no model.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

import numpy as np

from icl_regression import names

Budget = tuple[int, int]  # (batch_size, steps)
LEVEL = 0.95
NUM_REPLICATES = 2_000  # replicates of the interval (the stored evaluation replicates are reused cyclically)
INTERVAL_SEED = 0  # the replicates' random weights: fixed, so a summary is reproducible
EVALUATION_ONLY = "evaluation noise only (1 seed): not the threshold's uncertainty"
RULE = ("M* is the + to - sign change that best splits the grid, each M weighted by (difference / its standard "
        "error); -inf / +inf: below / above the grid's M")
CROSSING_QUANTITY = "Δ^T_true_PT,Ridge(larger budget) − Δ^T_true_PT,Ridge(smaller budget), paired by seed"
MIDPOINT_QUANTITY = "Δ^T_true_PT,Ridge − Δ^T_true_PT,dMMSE: equidistant (RMS) from ridge and dMMSE at 0"


def interval_source(num_seeds: int) -> str:
    """What an interval accounts for, as summaries, tables and figures state it."""
    if num_seeds < 2:
        return EVALUATION_ONLY
    return f"{num_seeds} seeds (t-calibrated) and evaluation sequences"


@dataclasses.dataclass(frozen=True)
class SignedCurve:
    """s over x = log2 M, per seed: `per_seed` [S, X] (NaN where a seed has no finished run), and each run's
    evaluation bootstrap replicates `replicates` [S, X, R] (a run without stored replicates repeats its value)."""

    xs: np.ndarray
    seeds: tuple[int, ...]
    per_seed: np.ndarray
    replicates: np.ndarray
    runs_without_replicates: int = 0  # runs that stored no evaluation replicates of a metric the curve uses

    @property
    def num_seeds(self) -> int:
        return int(np.any(np.isfinite(self.per_seed), axis=1).sum())


def budgets(rows: Sequence[dict]) -> list[Budget]:
    """The data budgets of a sweep, smallest (batch × steps) first."""
    return sorted({(r["batch_size"], r["steps"]) for r in rows}, key=lambda b: (b[0] * b[1], b))


BATCH, STEPS = "batch", "steps"  # the two kinds of budget pair


def budget_pairs(all_budgets: Sequence[Budget]) -> list[tuple[str, Budget, Budget]]:
    """(kind, small, large) for every two budgets equal in one coordinate and consecutive in the other: kind "batch",
    same steps and the next larger batch (B vs 2B in the paper's sweeps); kind "steps", same batch and the next larger
    steps (N vs 2N). Budgets that differ in both (e.g. (B, 2N) and (2B, N): as many sequences seen) are never paired.
    Batch pairs first, then steps pairs, each from the smallest budgets up: the first is the paper's B vs 2B."""
    pairs = []
    for kind, fixed, varying in ((BATCH, 1, 0), (STEPS, 0, 1)):
        groups: dict[int, list[Budget]] = {}
        for b in sorted(set(all_budgets)):
            groups.setdefault(b[fixed], []).append(b)
        for _, group in sorted(groups.items()):
            group.sort(key=lambda b: b[varying])
            pairs += [(kind, small, large) for small, large in zip(group, group[1:])]
    return pairs


def budget_key(budget: Budget) -> str:
    return f"B={budget[0]}_N={budget[1]}"


def parse_budget_key(key: str) -> Budget:
    """'B=64_N=2500' → (64, 2500)."""
    batch, steps = key.split("_")
    return int(batch[2:]), int(steps[2:])


def in_budget_order(estimates: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """A summary's "crossing" entries in `budget_pairs` order (the first is the pair M* is read from), or its
    "midpoint" entries smallest budget first (JSON files store them sorted by name)."""
    def order(item):
        label, estimate = item
        small = parse_budget_key(label.split("_vs_")[0])
        if "_vs_" not in label:
            return (0, small[0] * small[1], *small)
        if estimate.get("kind", BATCH) == BATCH:  # batch pairs first, from the smallest steps, then batch, up
            return (0, small[1], small[0])
        return (1, small[0], small[1])
    return sorted(estimates.items(), key=order)


def _finite_runs(rows: Sequence[dict], budget: Budget) -> dict[tuple[int, float], dict]:
    """{(seed, log2 M): row} of the finished finite-M runs of one budget (diverged runs never enter an average).

    Two runs of one (budget, seed, M) differ in some other setting (D, width, …): averaging them as if they were
    one cell would mix settings, so that is refused (`results.summarize` analyses each setting on its own)."""
    out: dict = {}
    for r in rows:
        if r["status"] == names.DONE and r["num_tasks"] > 0 and (r["batch_size"], r["steps"]) == budget:
            key = (r["seed"], math.log2(r["num_tasks"]))
            if key in out:
                raise ValueError(f"runs {out[key]['name']} and {r['name']} are the same cell (M={r['num_tasks']}, "
                                 f"B={budget[0]}, N={budget[1]}, seed {r['seed']}) in different settings; "
                                 "analyse each setting's rows separately")
            out[key] = r
    return out


def _num_stored(rows: Sequence[dict]) -> int:
    return max([len(v) for r in rows for v in r.get("bootstrap", {}).values()] + [1])


def _value_and_replicates(row: dict, key: str, num: int) -> tuple[float, np.ndarray, bool]:
    """A run's final value of `key`, its evaluation replicates (cycled to `num`), and whether it stored any (runs
    from before a metric was bootstrapped repeat their value: no evaluation noise from them)."""
    value = float(row["final"][key])
    stored = row.get("bootstrap", {}).get(key)
    return value, (np.resize(np.asarray(stored, float), num) if stored else np.full(num, value)), bool(stored)


def _signed_curve(runs_a: dict, runs_b: dict, key_a: str, key_b: str, num: int) -> SignedCurve:
    """s = value_a − value_b per (seed, x) where both runs exist: runs_a[key_a] − runs_b[key_b]."""
    xs = sorted({x for _, x in runs_a} & {x for _, x in runs_b})
    seeds = tuple(sorted({s for s, _ in runs_a} | {s for s, _ in runs_b}))
    per_seed = np.full((len(seeds), len(xs)), np.nan)
    replicates = np.full((len(seeds), len(xs), num), np.nan)
    without = set()
    for i, seed in enumerate(seeds):
        for j, x in enumerate(xs):
            if (seed, x) in runs_a and (seed, x) in runs_b:
                a, reps_a, stored_a = _value_and_replicates(runs_a[seed, x], key_a, num)
                b, reps_b, stored_b = _value_and_replicates(runs_b[seed, x], key_b, num)
                per_seed[i, j], replicates[i, j] = a - b, reps_a - reps_b
                without |= {runs_a[seed, x]["name"]} if not stored_a else set()
                without |= {runs_b[seed, x]["name"]} if not stored_b else set()
    return SignedCurve(np.asarray(xs, float), seeds, per_seed, replicates, len(without))


def crossing_curve(rows: Sequence[dict], small: Budget, large: Budget) -> SignedCurve:
    """Δ_large − Δ_small (Δ = Δ^{T_true}_{PT,Ridge}), per seed: each seed's two budgets are paired."""
    num = _num_stored(rows)
    return _signed_curve(_finite_runs(rows, large), _finite_runs(rows, small), names.THRESHOLD_METRIC,
                         names.THRESHOLD_METRIC, num)


def midpoint_curve(rows: Sequence[dict], budget: Budget) -> SignedCurve:
    """Δ^{T_true}_{PT,Ridge} − Δ^{T_true}_{PT,dMMSE} per seed, at one budget."""
    runs = _finite_runs(rows, budget)
    return _signed_curve(runs, runs, names.THRESHOLD_METRIC, names.MIDPOINT_METRIC, _num_stored(rows))


# --- The statistics of one signed curve: replicates, the split rule, sign changes, intervals. ---


@dataclasses.dataclass(frozen=True)
class CurveReplicates:
    point: np.ndarray  # [X] seed mean
    replicates: np.ndarray  # [R, X]
    se: np.ndarray  # [X] standard error over seeds and evaluation sequences
    se_seed: np.ndarray  # [X] s / sqrt(n) over the seeds at this M (0 with one seed)
    se_eval: np.ndarray  # [X] spread of the seed mean over evaluation replicates
    seeds_per_x: np.ndarray  # [X]
    usable: np.ndarray  # [X] enters the estimate: with several seeds, an M needs two (else its seed spread is unknown)


def curve_replicates(curve: SignedCurve, num_replicates: int = NUM_REPLICATES,
                     rng: np.random.Generator | None = None) -> CurveReplicates:
    """The seed-mean curve and `num_replicates` perturbed copies (module docstring: evaluation part + seed part)."""
    rng = rng if rng is not None else np.random.default_rng(INTERVAL_SEED)
    finite = np.isfinite(curve.per_seed)
    n_x = finite.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        point = np.where(n_x > 0, np.nansum(curve.per_seed, axis=0) / n_x, np.nan)
        deviations = np.where(finite, curve.per_seed - point, 0.0)  # [S, X]
        eval_dev = np.where(finite[..., None], curve.replicates - curve.per_seed[..., None], 0.0)
        eval_mean_dev = eval_dev.sum(axis=0) / np.maximum(n_x, 1)[:, None]  # [X, R_eval]
        eval_mean_dev = eval_mean_dev * _shared_fraction(eval_dev, eval_mean_dev, finite, n_x)[:, None]
        replicates = point + eval_mean_dev[:, np.arange(num_replicates) % eval_mean_dev.shape[1]].T
        se_seed = np.where(n_x >= 2, np.sqrt((deviations ** 2).sum(axis=0) / np.maximum(n_x - 1, 1)
                                             / np.maximum(n_x, 1)), 0.0)
        dof = int(n_x.max(initial=0)) - 1
        if dof >= 1:
            weights = rng.standard_normal((num_replicates, len(curve.seeds)))
            chi2 = rng.chisquare(dof, num_replicates)
            t_scale = np.broadcast_to(np.sqrt(dof / chi2)[:, None], (num_replicates, len(n_x))).copy()
            for nu in sorted({int(n) - 1 for n in n_x if 2 <= n < dof + 1}):  # M with fewer seeds: t with n − 1
                chi2_nu = chi2 * rng.beta(nu / 2, (dof - nu) / 2, num_replicates)  # χ²_ν, correlated with χ²_dof
                t_scale[:, n_x == nu + 1] = np.sqrt(nu / chi2_nu)[:, None]
            norm = np.where(n_x >= 2, np.sqrt(n_x * (n_x - 1.0)), np.inf)
            replicates = replicates + t_scale * (weights @ deviations) / norm
    se_eval = eval_mean_dev.std(axis=1)
    usable = n_x >= (2 if curve.num_seeds >= 2 else 1)
    return CurveReplicates(point, replicates, np.hypot(se_seed, se_eval), se_seed, se_eval, n_x, usable)


def _shared_fraction(eval_dev: np.ndarray, eval_mean_dev: np.ndarray, finite: np.ndarray,
                     n_x: np.ndarray) -> np.ndarray:
    """[X] factors that shrink the seed mean's evaluation deviations to the part every seed's run shares.

    A run's evaluation error has a part shared by all runs (they see the same sequences) and a part of its own. The
    own part already shows in the spread between seeds, which the seed part resamples, so counting it again would
    widen the interval: the variance of the mean deviation, σ²_shared + σ²_own / n, is cut to σ²_shared, estimated
    as that variance minus the within-seed variance around the mean / (n − 1). With one seed nothing is cut.
    """
    var_mean = eval_mean_dev.var(axis=1)
    within = np.where(finite[..., None], eval_dev - eval_mean_dev, 0.0).var(axis=2).sum(axis=0)
    within = within / np.maximum(n_x, 1)
    shared = np.maximum(var_mean - within / np.maximum(n_x - 1, 1), 0.0)
    return np.where((n_x >= 2) & (var_mean > 0), np.sqrt(shared / np.where(var_mean > 0, var_mean, 1.0)), 1.0)


def split_estimates(xs: np.ndarray, curves: np.ndarray, se: np.ndarray) -> np.ndarray:
    """M* by the rule (module docstring) for each row of `curves` [..., X]: the interpolated zero of the best split,
    −inf / +inf when the best split is below / above the grid."""
    xs, curves = np.asarray(xs, float), np.asarray(curves, float)
    if xs.size == 0:
        return np.full(curves.shape[:-1], np.nan)
    scale = float(np.max(np.abs(curves), initial=0.0, where=np.isfinite(curves)))  # all se = 0 (exact curves): z
    floor = max(float(np.max(se, initial=0.0)) * 1e-6, scale * 1e-12, np.finfo(float).tiny)  # stays finite
    z = curves / np.maximum(se, floor)
    cumulative = np.cumsum(z, axis=-1)
    total = cumulative[..., -1:]
    evidence = np.concatenate([-total, 2 * cumulative - total], axis=-1)  # index i + 1 ↔ split after point i
    split = np.argmax(evidence, axis=-1) - 1
    inner = np.clip(split, 0, max(xs.size - 2, 0))
    zeros = _bracket_zeros(xs, curves)  # [..., X − 1]
    located = np.take_along_axis(zeros, inner[..., None], -1)[..., 0] if xs.size > 1 else np.full(split.shape, np.nan)
    return np.where(split < 0, -np.inf, np.where(split >= xs.size - 1, np.inf, located))


def _bracket_zeros(xs: np.ndarray, curves: np.ndarray) -> np.ndarray:
    """[..., X − 1]: where the linear interpolation of each curve between points j and j+1 is zero (any value when
    it does not change sign there; callers select)."""
    lo, hi = curves[..., :-1], curves[..., 1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.where(lo == hi, 0.5, lo / (lo - hi))
    return xs[:-1] + (xs[1:] - xs[:-1]) * fraction


def sign_changes(curves: np.ndarray) -> np.ndarray:
    """[..., X − 1] of +1 where a curve changes from positive to negative between points j and j+1, −1 for the
    reverse, 0 else. A point exactly 0 takes the sign before it (leading zeros the sign after them), so a curve that
    touches zero without crossing has no sign change, and one that crosses through a zero at point j has one, in the
    bracket whose interpolated zero is that point."""
    curves = np.asarray(curves, float)
    sign = np.where(curves > 0, 1, np.where(curves < 0, -1, 0))
    if sign.shape[-1] == 0:
        return sign[..., :0]
    for flip in (False, True):  # carry the last nonzero sign forward, then (for leading zeros) backward
        s = sign[..., ::-1] if flip else sign
        index = np.maximum.accumulate(np.where(s != 0, np.arange(s.shape[-1]), 0), axis=-1)
        s = np.take_along_axis(s, index, axis=-1)
        sign = s[..., ::-1] if flip else s
    before, after = sign[..., :-1], sign[..., 1:]
    return np.where((before > 0) & (after < 0), 1, np.where((before < 0) & (after > 0), -1, 0))


def percentile_interval(samples: np.ndarray, level: float = LEVEL) -> list[float]:
    """The central `level` interval of `samples` by order statistics (infinite samples allowed; NaN dropped)."""
    values = np.sort(np.asarray(samples, float)[~np.isnan(samples)])
    if values.size == 0:
        return [math.nan, math.nan]
    tail = (1 - level) / 2
    lo = values[int(math.floor(tail * values.size))]
    hi = values[min(values.size - 1, int(math.ceil((1 - tail) * values.size)) - 1)]
    return [float(lo), float(hi)]


def _location(value: float) -> str:
    if math.isnan(value):
        return "none"
    return "below" if value == -math.inf else "above" if value == math.inf else "inside"


def _estimates(curve: SignedCurve, reps, num_replicates: int) -> tuple[np.ndarray, float, np.ndarray]:
    """(which M are used, the point estimate, each replicate's estimate) of a curve: log2 M*, ±inf outside the
    grid, NaN without data. An M is used where its value is finite and its seed spread usable."""
    ok = np.isfinite(reps.point) & reps.usable
    xs, se = curve.xs[ok], reps.se[ok]
    if not xs.size:
        return ok, math.nan, np.full(num_replicates, np.nan)
    return ok, float(split_estimates(xs, reps.point[ok], se)), split_estimates(xs, reps.replicates[:, ok], se)


def replicate_estimates(curve: SignedCurve, num_replicates: int = NUM_REPLICATES,
                        seed: int = INTERVAL_SEED) -> np.ndarray:
    """log2 M* of each bootstrap replicate of `curve` (±inf outside the grid): the samples whose central 95% is
    `analyse_curve`'s interval (the same replicates, the same M used)."""
    return _estimates(curve, curve_replicates(curve, num_replicates, np.random.default_rng(seed)), num_replicates)[2]


def threshold_curve(rows: Sequence[dict], method: str) -> SignedCurve:
    """The curve a summary's M* is read from (its "method", `estimate_thresholds`' rule): the crossing of the
    first budget pair (`budget_pairs`), or the midpoint of the smallest budget."""
    if method == "crossing":
        _, small, large = budget_pairs(budgets(rows))[0]
        return crossing_curve(rows, small, large)
    if method == "midpoint":
        return midpoint_curve(rows, budgets(rows)[0])
    raise ValueError(f"method={method!r} has no curve; allowed: 'crossing' or 'midpoint' (a summary's 'method')")


def analyse_curve(curve: SignedCurve, num_replicates: int = NUM_REPLICATES, seed: int = INTERVAL_SEED,
                  level: float = LEVEL) -> dict:
    """M* with its interval, every sign change with its own interval, and the curve per M, as stored in the
    sweep summary."""
    reps = curve_replicates(curve, num_replicates, np.random.default_rng(seed))
    ok, estimate, samples = _estimates(curve, reps, num_replicates)
    changes = _sign_change_intervals(curve.xs[ok], reps.point[ok], reps.replicates[:, ok], level, estimate)
    per_m = [{"num_tasks": round(2 ** x), "log2_num_tasks": float(x), "value": float(v), "se": float(s),
              "se_seed": float(ss), "se_eval": float(se_), "z": float(v / s) if s > 0 else math.nan,
              "num_seeds": int(n), "interval": percentile_interval(reps.replicates[:, j], level),
              "used": bool(ok[j])}
             for j, (x, v, s, ss, se_, n) in enumerate(zip(curve.xs, reps.point, reps.se, reps.se_seed,
                                                           reps.se_eval, reps.seeds_per_x)) if np.isfinite(v)]
    return {"log2_num_tasks": estimate, "num_tasks": 2 ** estimate if math.isfinite(estimate) else math.nan,
            "located": _location(estimate), "interval": percentile_interval(samples, level),
            "replicates": int(num_replicates),
            "replicates_inside_grid": int(np.isfinite(samples).sum()),
            "num_seeds": curve.num_seeds, "interval_source": interval_source(curve.num_seeds)
            + _fewer_seeds_text(curve.xs, reps.seeds_per_x, curve.num_seeds)
            + (f"; {curve.runs_without_replicates} runs stored no evaluation replicates of a metric used here, so "
               "their evaluation noise is left out" if curve.runs_without_replicates else ""),
            "sign_changes": changes, "per_num_tasks": per_m}


def _fewer_seeds_text(xs: np.ndarray, seeds_per_x: np.ndarray, num_seeds: int) -> str:
    """Which M have fewer seeds than the curve (their seed part uses their own t), and which are left out (one seed
    where the others have several: no spread to weigh it by)."""
    if num_seeds < 2:
        return ""
    fewer = [(round(2 ** x), int(n)) for x, n in zip(xs, seeds_per_x) if 1 <= n < num_seeds]
    if not fewer:
        return ""
    return "; fewer seeds at " + ", ".join(f"M = {m}: {n}" + (" (left out)" if n < 2 else "") for m, n in fewer)


def _sign_change_intervals(xs, point, replicates, level, estimate) -> list[dict]:
    """Each sign change of the seed-mean curve, with the interval of the replicates' change of the same direction
    nearest to it inside its window (half-way to the neighbouring changes); `support`: the fraction of replicates
    that have one there."""
    if xs.size < 2:
        return []
    directions = sign_changes(point)
    brackets = np.flatnonzero(directions)
    zeros = _bracket_zeros(xs, point)[brackets]
    rep_directions, rep_zeros = sign_changes(replicates), _bracket_zeros(xs, replicates)
    bounds = np.concatenate([[-np.inf], (zeros[:-1] + zeros[1:]) / 2, [np.inf]])
    out = []
    for c, (j, x) in enumerate(zip(brackets, zeros)):
        inside = (rep_zeros > bounds[c]) & (rep_zeros <= bounds[c + 1])
        candidates = np.where((rep_directions == directions[j]) & inside, rep_zeros, np.nan)
        found = np.any(np.isfinite(candidates), axis=1)
        distance = np.where(np.isfinite(candidates), np.abs(candidates - x), np.inf)
        nearest = np.take_along_axis(candidates, np.argmin(distance, axis=1)[:, None], 1)[:, 0]
        out.append({"log2_num_tasks": float(x), "num_tasks": float(2 ** x),
                    "direction": "+-" if directions[j] > 0 else "-+",
                    "between_num_tasks": [round(2 ** xs[j]), round(2 ** xs[j + 1])],
                    "interval": percentile_interval(nearest[found], level),
                    "support": float(found.mean()), "is_threshold": bool(abs(x - estimate) < 1e-9)})
    return out


# --- The sweep's thresholds. ---


def crossing_estimate(rows: Sequence[dict], small: Budget, large: Budget) -> float:
    """The crossing's point estimate (log2 M*; ±inf outside the grid, NaN without data)."""
    return _point_estimate(crossing_curve(rows, small, large))


def midpoint_estimate(rows: Sequence[dict], budget: Budget) -> float:
    """The midpoint's point estimate (log2 M*; ±inf outside the grid, NaN without data)."""
    return _point_estimate(midpoint_curve(rows, budget))


def _point_estimate(curve: SignedCurve) -> float:
    """A curve's point estimate alone (two replicates drawn: the standard errors weigh the M, not an interval)."""
    return _estimates(curve, curve_replicates(curve, 2), 2)[1]


_OUTSIDE = {"below": "below the grid: more data moved the model towards ridge at every M, weighed together",
            "above": "above the grid: more data moved the model away from ridge at every M, weighed together",
            "none": "not located: no M has finished runs of both budgets"}


def estimate_thresholds(rows: Sequence[dict], num_replicates: int | None = None, seed: int = INTERVAL_SEED) -> dict:
    """The crossing of every budget pair (`budget_pairs`) and the midpoint of each budget, with intervals.

    M* is the crossing of the first pair (the smallest B vs 2B; without batch pairs, N vs 2N) when it lies inside the
    grid, else the smallest budget's midpoint; `threshold_reason` says which and why.
    """
    num_replicates = num_replicates or NUM_REPLICATES
    all_budgets = budgets(rows)
    pairs = budget_pairs(all_budgets)
    crossing = {}
    for kind, small, large in pairs:
        result = analyse_curve(crossing_curve(rows, small, large), num_replicates, seed)
        crossing[f"{budget_key(small)}_vs_{budget_key(large)}"] = dict(result, quantity=CROSSING_QUANTITY, kind=kind)
    midpoint = {budget_key(b): dict(analyse_curve(midpoint_curve(rows, b), num_replicates, seed),
                                    quantity=MIDPOINT_QUANTITY) for b in all_budgets}
    first_label, first_crossing = next(iter(crossing.items()), (None, None))
    smallest = budget_key(all_budgets[0]) if all_budgets else None
    if first_crossing is not None and first_crossing["located"] == "inside":
        method, primary = "crossing", first_crossing
        reason = (f"the crossing of the first budget pair ({first_crossing['kind']}: {first_label.replace('_', ' ')}) "
                  "lies inside the grid")
    elif midpoint:
        method, primary = "midpoint", midpoint[smallest]
        reason = (f"the crossing of the first budget pair ({first_label.replace('_', ' ')}) lies "
                  f"{_OUTSIDE[first_crossing['located']]}; the midpoint of the smallest budget ({smallest}) instead"
                  if first_crossing is not None else
                  f"no two budgets equal in batch or in steps (no crossing): the midpoint of {smallest}")
    else:
        method, primary = "none", {"log2_num_tasks": math.nan, "interval": [math.nan, math.nan], "num_seeds": 0,
                                   "interval_source": interval_source(0), "located": "none"}
        reason = "no finished finite-M runs"
    return {"method": method, "threshold_log2_num_tasks": primary["log2_num_tasks"],
            "threshold_interval": primary["interval"], "threshold_located": primary["located"],
            "interval_source": primary["interval_source"], "num_seeds": primary["num_seeds"],
            "threshold_rule": RULE, "threshold_reason": reason, "crossing": crossing, "midpoint": midpoint}
