"""Analyses of the training-side experiments, from stored runs only (numpy, no jax): one function per experiment.

- budgets (Fig. 3, App. D): M* from batch B vs 2B and from steps N vs 2N side by side, and the single-budget M*
  after N, 2N, 4N steps (Fig. 4: does the threshold move with longer training?);
- dimension (Fig. 6): M* against D with intervals, κ* = M*/D, and Δ^{T_true}_{dMMSE,Ridge} at the largest M;
- capacity (Figs. 7, 13): M* against weight decay, width and depth, each for every model of the sweep, plus the
  T_true loss of the M = ∞ model (the loss cost of regularisation);
- above_threshold (Fig. 10): the final Δ and L/D of every M above M* against the M = ∞ model, over seeds.

Each returns a JSON-ready dict that `write_analysis` stores as `<workdir>/analysis/<name>.json`; the figures are drawn
from those files (plotting_experiments).
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from icl_regression import axes, dynamics, names, results
from icl_regression.store import StoreError, analysis_folder, read_json, write_json


def analysis_path(workdir: Path, name: str) -> Path:
    return Path(workdir) / names.ANALYSIS_DIR / f"{name}.json"


def write_analysis(workdir: Path, name: str, analysis: Mapping) -> Path:
    path = analysis_path(workdir, name)
    write_json(path, analysis)
    return path


def read_analysis(workdir: Path, name: str) -> dict:
    analysis_folder(workdir)  # a missing results folder, or a file where a folder belongs: say so
    path = analysis_path(workdir, name)
    if not path.exists():
        script = "landscape.py --config=…" if name == "landscape" else f"analyze.py --experiment={name}"
        raise StoreError(f"no {path}: run `python experiments/{script} --workdir={workdir}` first")
    return read_json(path)


def stored_analyses(workdir: Path) -> list[str]:
    """The names of the analyses stored in a results folder."""
    return sorted(p.stem for p in analysis_folder(workdir).glob("*.json"))  # a file there: an error, not none


def _curves(rows: Sequence[Mapping], key: str, group: Sequence[str] = ()) -> list[dict]:
    """Seed statistics of `key` per (axes, budget, M): the points every figure draws."""
    return [{"value": v["value"], "budget": v["budget"], "num_tasks": v["num_tasks"], **v[key]}
            for v in axes.final_values(rows, [key], group)]


def _seeds(rows: Sequence[Mapping]) -> list[int]:
    return sorted({r["seed"] for r in rows})


# --- Budgets and long training (Figs. 3, 4; App. D). ---


def steps_ladder(midpoints: Mapping[str, Mapping], budgets: Sequence[axes.Budget]) -> list[dict]:
    """Per batch with several step counts: the single-budget M* at each, and the shift from the shortest to the
    longest with whether their intervals overlap (the paper: no shift between 500k and 2M steps)."""
    out = []
    for batch in sorted({b[0] for b in budgets}):
        ladder = sorted(b for b in budgets if b[0] == batch)
        if len(ladder) < 2:
            continue
        first, last = (midpoints[axes.budget_label(b)] for b in (ladder[0], ladder[-1]))
        (lo1, hi1), (lo2, hi2) = first["interval"], last["interval"]
        located = all(map(math.isfinite, (first["log2_num_tasks"], last["log2_num_tasks"], lo1, hi1, lo2, hi2)))
        overlap = bool(max(lo1, lo2) <= min(hi1, hi2)) if located else None  # None: not both located
        out.append({"batch_size": batch, "steps": [b[1] for b in ladder],
                    "log2_num_tasks": [midpoints[axes.budget_label(b)]["log2_num_tasks"] for b in ladder],
                    "intervals": [midpoints[axes.budget_label(b)]["interval"] for b in ladder],
                    "shift_log2": last["log2_num_tasks"] - first["log2_num_tasks"],
                    "intervals_overlap": overlap})
    return out


def t_star_table(workdir: Path, rows: Sequence[Mapping]) -> list[dict]:
    """t* (closest approach to ridge) per M and budget: each seed's own t* (`dynamics.censored`: +inf at or past the
    end of its run, 0 at or before its first evaluation) and their median, how many of the seeds are transient, and
    the seed-mean curve's kind and t* with its interval over seeds (`dynamics`; the one adapter to it)."""
    dyn = dynamics.summarize_dynamics(results.run_metrics(workdir), rows)["dynamics"]
    per_run = {r["name"]: r for r in dyn["per_run"]}
    out = []
    for p in dyn["per_num_tasks"]:
        runs = [per_run[name] for name in p["runs"] if name in per_run]
        entries = [r["t_star"][dynamics.RIDGE] for r in runs]
        seeds = dynamics.censored(np.array([e["value"] for e in entries], float),
                                  np.array([e["status"] for e in entries], object))
        seeds = seeds[~np.isnan(seeds)]
        mean_curve = p["t_star"][dynamics.RIDGE]
        out.append({"num_tasks": p["num_tasks"], "batch_size": p["batch_size"], "steps": p["steps"],
                    "num_seeds": p["num_seeds"], "kind": p["kind"],
                    "num_transient": sum(r["kind"] == dynamics.TRANSIENT for r in runs),
                    "t_star_seeds": seeds.tolist(), "t_star_median": float(np.median(seeds)) if len(seeds) else None,
                    "t_star_censored": int(np.sum(np.isinf(seeds) | (seeds == 0))),
                    "t_star_seed_mean": mean_curve["value"], "t_star_seed_mean_interval": mean_curve["interval"],
                    "t_star_seed_mean_status": mean_curve["status"]})
    return out


def budgets_analysis(rows: Sequence[Mapping], workdir: Path | None = None, num_replicates: int | None = None) -> dict:
    """Crossings of every explicit budget pair (batch and steps kinds), the midpoint of every budget, the steps
    ladder (N, 2N, 4N)."""
    budgets = sorted({axes.budget_of(r) for r in rows})
    crossings = []
    for pair in axes.budget_pairs(budgets):
        est = axes.threshold_for(rows, [pair["small"], pair["large"]], num_replicates)
        crossings.append({"kind": pair["kind"], "small": list(pair["small"]), "large": list(pair["large"]),
                          "label": pair["label"], **(est["crossing"] or axes.estimate_fields(None))})
    midpoints = {}
    for budget in budgets:
        est = axes.threshold_for(rows, [budget], num_replicates)
        midpoints[axes.budget_label(budget)] = {"budget": list(budget), **(
            est["midpoint"].get(axes.budget_label(budget)) or axes.estimate_fields(None))}
    analysis = {"experiment": "budgets", "seeds": _seeds(rows), "budgets": [list(b) for b in budgets],
                "ratio_curves": axes.ratio_curves(rows),
                "crossings": crossings, "midpoints": midpoints, "steps_ladder": steps_ladder(midpoints, budgets),
                "curves": _curves(rows, names.THRESHOLD_METRIC),
                "scale_curves": _curves(rows, names.THRESHOLD_SCALE)}
    if workdir is not None:
        analysis["t_star"] = t_star_table(workdir, rows)
    return analysis


def format_budgets(analysis: Mapping) -> str:
    lines = [f"budgets (seeds {analysis['seeds']}): crossings of explicit pairs"]
    for c in analysis["crossings"]:
        lines.append(f"  {c['kind']:5s} {c['label']:40s} {_fmt(c)}")
    lines.append("single-budget midpoints")
    for label, m in analysis["midpoints"].items():
        lines.append(f"  {label:46s} {_fmt(m)}")
    for ladder in analysis["steps_ladder"]:
        lines.append(f"steps ladder at B={ladder['batch_size']}: N = {ladder['steps']} → log2 M* = "
                     + ", ".join(f"{x:.2f}" for x in ladder["log2_num_tasks"])
                     + f"; shift {ladder['shift_log2']:+.2f}, intervals overlap: {ladder['intervals_overlap']}")
    return "\n".join(lines)


def _fmt(est: Mapping) -> str:
    x, (lo, hi) = est["log2_num_tasks"], est["interval"]
    if x is None or math.isnan(x):
        return "not located"
    interval = f"95% [{results.format_log2(lo)}, {results.format_log2(hi)}]"
    if est.get("num_seeds", 2) < 2:
        interval += " (evaluation noise only: 1 seed)"
    if not math.isfinite(x):
        return f"M* {results.format_log2(x)}  {interval}"
    return f"log2 M* = {x:5.2f} (M* ≈ {2**x:7.1f})  {interval}"


# --- Dimension (Fig. 6). ---


def dimension_analysis(rows: Sequence[Mapping], num_replicates: int | None = None) -> dict:
    """Per D: M* with its interval, κ* = M*/D, and Δ^{T_true}_{dMMSE,Ridge} at the largest finite M (over seeds);
    and the slope of log2 M* on log2 D (1 = linear in D)."""
    entries = axes.threshold_against_axis(rows, [axes.DIM], num_replicates=num_replicates)
    for entry in entries:
        dim = entry["value"][axes.DIM]
        entry["kappa"] = axes.scaled_threshold(entry, dim)
        group = [r for r in rows if r["axes"][axes.DIM] == dim and r["status"] == names.DONE]
        largest = axes.largest_finite_num_tasks(group)
        entry["largest_num_tasks"] = largest
        entry["dmmse_ridge_at_largest"] = axes.seed_stats(
            [r["final"][names.THRESHOLD_SCALE] for r in group if r["num_tasks"] == largest])
    located = [e["value"][axes.DIM] for e in entries if math.isfinite(e["primary"]["log2_num_tasks"])]
    xs = [(math.log2(e["value"][axes.DIM]), e["primary"]["log2_num_tasks"]) for e in entries
          if e["value"][axes.DIM] in located]
    slope = float(np.polyfit(*zip(*xs), 1)[0]) if len(located) >= 2 else math.nan
    return {"experiment": "dimension", "axis": axes.DIM, "seeds": _seeds(rows), "entries": entries,
            "log2_slope": slope, "log2_slope_dims": located,
            "log2_slope_left_out": [e["value"][axes.DIM] for e in entries if e["value"][axes.DIM] not in located],
            "curves": _curves(rows, names.THRESHOLD_METRIC, [axes.DIM]),
            "scale_curves": _curves(rows, names.THRESHOLD_SCALE, [axes.DIM]),
            "ratio_curves": axes.ratio_curves(rows, [axes.DIM])}


def format_dimension(analysis: Mapping) -> str:
    lines = [f"dimension (seeds {analysis['seeds']}): M* against D"]
    for e in analysis["entries"]:
        k = e["kappa"]
        d = e["dmmse_ridge_at_largest"]
        lines.append(f"  D={e['value'][axes.DIM]:<3} {e['primary']['method']:26s} {_fmt(e['primary'])}  κ* = "
                     f"{k['value']:.2f} [{k['interval'][0]:.2f}, {k['interval'][1]:.2f}]  Δ_dMMSE,Ridge(M="
                     f"{e['largest_num_tasks']}) = {d['mean']:.4f} ± {d['std']:.4f}")
    used, left_out = analysis.get("log2_slope_dims"), analysis.get("log2_slope_left_out")
    fit = "" if used is None else (f"; a least-squares line through D = {', '.join(map(str, used))} (point "
                                   "estimates, no interval)" + (f"; D = {', '.join(map(str, left_out))} left out "
                                                                f"(M* not inside the grid)" if left_out else ""))
    lines.append(f"slope of log2 M* on log2 D: {analysis['log2_slope']:.2f} (1 = linear){fit}")
    return "\n".join(lines)


# --- Regularisation and capacity (Figs. 7, 13). ---


CAPACITY_AXES = (axes.WEIGHT_DECAY, axes.WIDTH, axes.DEPTH)


def capacity_analysis(rows: Sequence[Mapping], num_replicates: int | None = None) -> dict:
    """M* for every (weight decay, width, depth) setting of the sweep, organised per axis: for each axis, one series
    per combination of the other two (e.g. weight decay for the small and for the larger model). Also the T_true loss
    of the M = ∞ model per setting: what regularisation and capacity cost where diversity is unlimited."""
    entries = axes.threshold_against_axis(rows, CAPACITY_AXES, num_replicates=num_replicates)
    loss_key = names.loss_key(names.TRUE, names.PT)
    infinite = {tuple(v["value"][a] for a in CAPACITY_AXES): v[loss_key]
                for v in axes.final_values(rows, [loss_key], CAPACITY_AXES) if v["num_tasks"] <= 0}
    ridge = axes.seed_stats([r["final"][names.loss_key(names.TRUE, names.RIDGE)] for r in rows])
    for entry in entries:
        entry["infinite_true_loss"] = infinite.get(tuple(entry["value"][a] for a in CAPACITY_AXES))
    series = {}
    for axis in CAPACITY_AXES:
        others = [a for a in CAPACITY_AXES if a != axis]
        by_others = {}
        for entry in entries:
            by_others.setdefault(tuple(entry["value"][a] for a in others), []).append(entry)
        series[axis] = [{"fixed": dict(zip(others, key)), "points": sorted(points, key=lambda e: e["value"][axis])}
                        for key, points in sorted(by_others.items()) if len(points) >= 2]
    return {"experiment": "capacity", "axes": list(CAPACITY_AXES), "seeds": _seeds(rows), "entries": entries,
            "series": series, "ridge_true_loss": ridge["mean"],
            "ratio_curves": axes.ratio_curves(rows, list(CAPACITY_AXES))}


def format_capacity(analysis: Mapping) -> str:
    lines = [f"regularisation and capacity (seeds {analysis['seeds']}); L/D of ridge on T_true = "
             f"{analysis['ridge_true_loss']:.4f}"]
    for axis, series in analysis["series"].items():
        for s in series:
            lines.append(f"  {axis} at {s['fixed']}:")
            for e in s["points"]:
                loss = e["infinite_true_loss"]
                loss_text = f"{loss['mean']:.4f} ± {loss['std']:.4f}" if loss else "—"
                lines.append(f"    {axis}={e['value'][axis]!s:<8} {e['primary']['method']:26s} "
                             f"{_fmt(e['primary'])}  L/D(M=∞, T_true) = {loss_text}")
    return "\n".join(lines)


# --- Final values above the threshold (Fig. 10). ---


def above_threshold_analysis(rows: Sequence[Mapping], num_replicates: int | None = None) -> dict:
    """Per budget: its M* (the single-budget midpoint; where that is not located, the crossing of an explicit budget
    pair that includes this budget), and the final values of every M above it against the M = ∞ model."""
    budgets = sorted({axes.budget_of(r) for r in rows})
    crossings = []
    for pair in axes.budget_pairs(budgets):
        est = axes.threshold_for(rows, [pair["small"], pair["large"]], num_replicates)["crossing"]
        if est and math.isfinite(est["log2_num_tasks"]):
            crossings.append((pair, est))
    per_budget = []
    for budget in budgets:
        est = axes.threshold_for(rows, [budget], num_replicates)["midpoint"].get(
            axes.budget_label(budget)) or axes.estimate_fields(None)
        source = f"midpoint {axes.budget_label(budget)}"
        if not math.isfinite(est["log2_num_tasks"]):
            pair, est = next(((p, e) for p, e in crossings if budget in (p["small"], p["large"])),
                             (None, axes.estimate_fields(None)))
            source = f"crossing {pair['label']}" if pair else "not located"
        per_budget.append({"threshold": est, "threshold_source": source,
                           **axes.final_values_above(rows, est["log2_num_tasks"], budget)})
    return {"experiment": "above_threshold", "seeds": _seeds(rows), "budgets": per_budget,
            "curves": {key: _curves(rows, key) for key in axes.ABOVE_THRESHOLD_KEYS}}


def format_above_threshold(analysis: Mapping) -> str:
    key, loss = names.THRESHOLD_METRIC, names.loss_key(names.TRUE, names.PT)
    lines = [f"final values above the threshold (seeds {analysis['seeds']}): mean ± std (min–max) over seeds"]
    for b in analysis["budgets"]:
        lines.append(f"  B={b['budget'][0]}, N={b['budget'][1]}: M* from {b['threshold_source']}: "
                     f"{_fmt(b['threshold'])}" + ("" if b["above"] else "; no M above it: every finite M shown"))
        shown = b["above"] or b["all"]
        rows = [(str(e["num_tasks"]), e) for e in shown] + ([("inf", b["infinite"])] if b["infinite"] else [])
        for label, e in rows:
            lines.append(f"    M={label:<5} Δ_PT,Ridge(T_true) = {_stat(e[key])}   L/D(T_true) = {_stat(e[loss])}")
    return "\n".join(lines)


def _stat(s: Mapping) -> str:
    return f"{s['mean']:.4f} ± {s['std']:.4f} ({s['min']:.4f}–{s['max']:.4f}, n={s['n']})"


# --- The table of analyses. ---


ANALYSES: dict[str, tuple[Sequence[str], Callable, Callable]] = {
    # name: (axes read from each run's config, analysis(rows, workdir, num_replicates), text formatter)
    "budgets": ((), lambda rows, workdir, n: budgets_analysis(rows, workdir, n), format_budgets),
    "dimension": ((axes.DIM,), lambda rows, workdir, n: dimension_analysis(rows, n), format_dimension),
    "capacity": (CAPACITY_AXES, lambda rows, workdir, n: capacity_analysis(rows, n), format_capacity),
    "above_threshold": ((), lambda rows, workdir, n: above_threshold_analysis(rows, n), format_above_threshold),
}


def run_analysis(name: str, workdir: Path, num_replicates: int | None = None) -> dict:
    """Reads the runs of `workdir`, analyses them as experiment `name`, writes `<workdir>/analysis/<name>.json`."""
    if name not in ANALYSES:
        raise ValueError(f"unknown experiment {name!r}; allowed: {', '.join(ANALYSES)}")
    axis_names, analyse, _ = ANALYSES[name]
    rows = axes.load_rows(workdir, axis_names)
    settings = sorted({tuple(r["axes"][a] for a in axis_names) for r in rows})
    if axis_names and not any(sum(x != y for x, y in zip(a, b)) == 1 for a, b in itertools.combinations(settings, 2)):
        found = "; ".join(", ".join(f"{a}={v}" for a, v in zip(axis_names, s)) for s in settings[:4])
        raise ValueError(f"the {name} analysis compares runs that differ in one of {', '.join(axis_names)}, the "
                         f"others fixed; the finished runs under {workdir} have {len(settings)} setting(s): {found}")
    analysis = analyse(rows, Path(workdir), num_replicates)
    write_analysis(workdir, name, analysis)
    return analysis


def format_analysis(name: str, analysis: Mapping) -> str:
    return ANALYSES[name][2](analysis)
