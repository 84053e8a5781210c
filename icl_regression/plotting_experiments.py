"""Figures of the training-side experiments, drawn from their stored analyses (analysis/<name>.json): no jax.

The shared style of `plotting`: one colour per predictor or pair of predictors, one line style per data budget,
log2 M axes; the threshold as a point with its 95% interval. One figure per experiment (capacity: one per axis).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib.ticker
import numpy as np

from icl_regression import axes, dynamics, names, results
from icl_regression.config import num_tasks_label
from icl_regression.plotting import BUDGET_STYLES, COLORS, STYLE, budget_label, num_tasks_colors, plt, save
from icl_regression.training_experiments import CAPACITY_AXES, read_analysis

AXIS_LABELS = {axes.DIM: "task dimension D", axes.WEIGHT_DECAY: "weight decay", axes.WIDTH: "width d_model",
               axes.DEPTH: "depth (layers)"}
SERIES_COLORS = ("#1f4e9c", "#e08214", "#2e933c", "#7b3294")
EVAL_SET_STYLES = {names.PRETRAIN: "-", names.TRUE: "--"}


def _x_of_num_tasks(num_tasks: Sequence[int], inf_x: float) -> np.ndarray:
    return np.array([inf_x if m <= 0 else math.log2(m) for m in num_tasks])


def _curve_points(curves: Sequence[Mapping], budget, value: Mapping | None = None):
    """(M, mean, min, max) of one budget (and axis value) from an analysis' `curves`, M ascending, ∞ last."""
    points = [c for c in curves if tuple(c["budget"]) == tuple(budget) and (value is None or c["value"] == value)]
    points.sort(key=lambda c: c["num_tasks"] if c["num_tasks"] > 0 else math.inf)
    return ([c["num_tasks"] for c in points], np.array([c["mean"] for c in points]),
            np.array([c["min"] for c in points]), np.array([c["max"] for c in points]))


def _log2_m_axis(ax, num_tasks: Sequence[int], inf_x: float | None) -> None:
    finite = sorted({int(math.log2(m)) for m in num_tasks if m > 0})
    ticks, labels = finite[:: max(1, math.ceil(len(finite) / 7))], None
    labels = [f"$2^{{{t}}}$" for t in ticks]
    if inf_x is not None and any(m <= 0 for m in num_tasks):
        ticks, labels = ticks + [inf_x], labels + [r"$\infty$"]
    ax.set_xticks(ticks, labels)
    ax.set_xlabel("number of pretraining tasks M")


def _mark(ax, est: Mapping, color: str, y: float | None = None, x_range: tuple[float, float] | None = None) -> None:
    """A threshold: vertical line and shaded interval (or, with `y`, a point with horizontal error bar; an interval
    open beyond the grid is drawn to the edge of `x_range` and ends in an arrow)."""
    x, (lo, hi) = est["log2_num_tasks"], est["interval"]
    if x is None or math.isnan(x):
        return
    if not math.isfinite(x):  # beyond the grid: an arrow at that edge, the bar from the interval's finite end
        if y is not None and x_range is not None:
            edge, start, marker = (x_range[1], lo, ">") if x > 0 else (x_range[0], hi, "<")
            start = start if start is not None and math.isfinite(start) else edge
            ax.plot([start, edge], [y, y], color=color, lw=1.2)
            ax.plot([edge], [y], marker, color=color, ms=6)
        return
    if y is None:
        if lo is not None and hi is not None and math.isfinite(lo) and math.isfinite(hi):
            ax.axvspan(lo, hi, color=color, alpha=0.12, lw=0)
        ax.axvline(x, color=color, lw=1, ls=":")
        return
    left, right = x_range if x_range is not None else (x - 1.0, x + 1.0)
    ends = [(lo, min(left, x), "<"), (hi, max(right, x), ">")]
    drawn = [end if end is not None and math.isfinite(end) else edge for end, edge, _ in ends]
    ax.errorbar([x], [y], xerr=[[x - drawn[0]], [drawn[1] - x]], fmt="o", color=color, ms=4, capsize=3)
    for (end, edge, marker) in ends:
        if end is None or not math.isfinite(end):
            ax.plot([edge], [y], marker, color=color, ms=5)


def _seeds_note(analysis: Mapping) -> str:
    """The seeds of a figure, and, with one seed, that its intervals hold evaluation noise only."""
    seeds = analysis["seeds"]
    return f"seeds {seeds}" + ("; one seed: intervals are evaluation noise only" if len(seeds) < 2 else "")


def _budget_styles(analysis: Mapping) -> dict:
    """One line style per budget, the same in every panel: budgets in the analysis' order."""
    return {tuple(b): BUDGET_STYLES[i % len(BUDGET_STYLES)] for i, b in enumerate(analysis["budgets"])}


def _delta_curves(ax, analysis: Mapping, budgets: Sequence, crossings: Sequence[Mapping], title: str) -> None:
    num_tasks_all = [c["num_tasks"] for c in analysis["curves"]]
    inf_x = max(math.log2(m) for m in num_tasks_all if m > 0) + 1.0
    styles = _budget_styles(analysis)
    for budget in budgets:
        m, mean, lo, hi = _curve_points(analysis["curves"], budget)
        xs = _x_of_num_tasks(m, inf_x)
        ax.plot(xs, mean, styles[tuple(budget)], marker="o", ms=3, color=COLORS["pt_ridge"],
                label=f"{names.LABELS['pt_ridge']}, {budget_label(*budget)}")
        ax.fill_between(xs, lo, hi, color=COLORS["pt_ridge"], alpha=0.1, lw=0)
    m, mean, _, _ = _curve_points(analysis["scale_curves"], budgets[0])
    finite = [i for i, v in enumerate(m) if v > 0]  # dMMSE is ridge at M = ∞
    ax.plot(_x_of_num_tasks([m[i] for i in finite], inf_x), mean[finite], "-", color=COLORS["dmmse_ridge"], lw=1,
            label=names.LABELS["dmmse_ridge"])
    for j, crossing in enumerate(crossings):
        _mark(ax, crossing, f"C{j}")
    ax.set_yscale("log")
    ax.set_ylabel(f"{names.LABELS['pt_ridge']} on {names.LABELS[names.TRUE]}")
    _log2_m_axis(ax, num_tasks_all, inf_x)
    ax.set_title(title)
    ax.legend(loc="lower left")


def _ratio_panel(ax, curves: Sequence[Mapping], lines: Sequence[tuple[str, Mapping, str, object]],
                 x_scale=None, legend_outside: bool = False) -> None:
    """r = Δ_PT,Ridge/(Δ_PT,Ridge + Δ_PT,dMMSE) on T_true against M (or M/x_scale(line)): one line per (label,
    selector, style, colour), seed mean with the seed range shaded; the midpoint estimate is where it crosses 1/2."""
    for label, select, style, color in lines:
        pts = sorted((c for c in curves if all(c.get(k) == v for k, v in select.items())),
                     key=lambda c: c["num_tasks"])
        if not pts:
            continue
        scale = x_scale(select) if x_scale else 1.0
        m = np.array([c["num_tasks"] / scale for c in pts], float)
        mean = np.array([c["mean"] for c in pts])
        ax.plot(m, mean, style, marker="o", ms=3, color=color, label=label)
        ax.fill_between(m, [c["min"] for c in pts], [c["max"] for c in pts], color=color, alpha=0.1, lw=0)
    ax.axhline(0.5, color="0.5", lw=0.8, ls=":")
    ax.set_xscale("log", base=2)
    ax.set_ylabel(r"$\Delta_{PT,Ridge}/(\Delta_{PT,Ridge}+\Delta_{PT,dMMSE})$ on $T_{true}$", fontsize=7)
    if legend_outside:  # many curves: beside the panel, not over their bands
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=6, frameon=False)
    else:
        ax.legend(loc="best", fontsize=6)


def _forest(ax, estimates: Sequence[tuple[str, Mapping]], x_range: tuple[float, float] | None = None) -> None:
    """Threshold estimates side by side: one row each, point and 95% interval on the log2 M axis (`x_range`: the
    sweep's log2 M range)."""
    edges = (x_range[0] - 0.25, x_range[1] + 0.25) if x_range is not None else None
    if edges is not None:
        ax.set_xlim(edges[0] - 0.1, edges[1] + 0.1)
    for i, (label, est) in enumerate(estimates):
        color = f"C{i}" if "vs" in label else "0.3"
        _mark(ax, est, color, y=-i, x_range=edges)
        x = est["log2_num_tasks"] if est["log2_num_tasks"] is not None else math.nan
        where = "" if math.isfinite(x) else ": not located" if math.isnan(x) else f": {results.format_log2(x)}"
        ax.text(0.01, -i + 0.3, label + where, transform=ax.get_yaxis_transform(), va="center", fontsize=7,
                color="0.2" if math.isfinite(x) else "0.4")
    ax.set_ylim(-len(estimates) + 0.5, 0.7)
    ax.set_yticks([])
    ax.set_xlabel(r"$\log_2 M^*$ (arrow: interval open beyond the grid)")
    ax.set_title("threshold: crossings and single-budget midpoints")


def _short_budget(budget) -> str:
    return f"B={budget[0]}, N={budget[1]:,}"


def budgets_figure(analysis: Mapping):
    """Δ^{T_true}_{PT,Ridge} against M for the batch pairs and the steps pairs, the crossings marked; the ratio curve
    the single-budget midpoint reads; and every estimate side by side."""
    crossings = analysis["crossings"]
    with plt.rc_context(STYLE):
        fig, axs = plt.subplots(2, 2, figsize=(11, 7.6))
        for ax, kind, title in ((axs[0, 0], axes.BATCH, "more data as a larger batch (fixed steps)"),
                                (axs[0, 1], axes.STEPS, "more data as more steps (fixed batch)")):
            chosen = [c for c in crossings if c["kind"] == kind]
            budgets = sorted({tuple(b) for c in chosen for b in (c["small"], c["large"])})
            if budgets:
                _delta_curves(ax, analysis, budgets, chosen, title)
            else:
                ax.text(0.5, 0.5, f"no {kind} pair in this sweep", ha="center", transform=ax.transAxes)
        styles = _budget_styles(analysis)
        _ratio_panel(axs[1, 0], analysis.get("ratio_curves", []),
                     [(_short_budget(b), {"budget": list(b)}, styles[tuple(b)], COLORS["pt_ridge"])
                      for b in styles])
        axs[1, 0].set_xlabel("number of pretraining tasks M")
        axs[1, 0].set_title("the curve the single-budget midpoint reads (1/2 dotted)")
        estimates = [(f"crossing {_short_budget(c['small'])} vs {'B' if c['kind'] == axes.BATCH else 'N'}="
                      f"{c['large'][0 if c['kind'] == axes.BATCH else 1]:,}", c) for c in crossings]
        estimates += [(f"midpoint {_short_budget(m['budget'])}", m)  # budget order, as drawn from memory or JSON
                      for m in sorted(analysis["midpoints"].values(), key=lambda m: tuple(m["budget"]))]
        finite = [math.log2(c["num_tasks"]) for c in analysis["curves"] if c["num_tasks"] > 0]
        _forest(axs[1, 1], estimates, (min(finite), max(finite)) if finite else None)
        fig.suptitle(f"data budgets: the threshold from more data of each kind ({_seeds_note(analysis)}; bands: "
                     "seed range; crossing intervals shaded)")
        fig.tight_layout()
    return fig


def long_dynamics_figure(analysis: Mapping):
    """Training N and 4N steps at a fixed batch: the ratio curves the midpoint reads at each length, the
    single-budget M* against training steps (with the steps crossings), and t* against M as a fraction of training."""
    styles = _budget_styles(analysis)
    ladders = analysis["steps_ladder"]
    with plt.rc_context(STYLE):
        fig, axs = plt.subplots(1, 3, figsize=(14, 3.8))
        lines = [(_short_budget((ladder["batch_size"], steps)), {"budget": [ladder["batch_size"], steps]},
                  styles[(ladder["batch_size"], steps)], f"C{i}") for i, ladder in enumerate(ladders)
                 for steps in ladder["steps"]]
        _ratio_panel(axs[0], analysis.get("ratio_curves", []), lines)
        axs[0].set_xlabel("number of pretraining tasks M")
        axs[0].set_title("the transition at each training length")
        ax = axs[1]
        located = False
        for i, ladder in enumerate(ladders):
            steps, xs = np.array(ladder["steps"], float), np.array(ladder["log2_num_tasks"], float)
            ok = np.isfinite(xs)
            if ok.any():
                located = True
                lo = np.array([iv[0] for iv in ladder["intervals"]], float)[ok]
                hi = np.array([iv[1] for iv in ladder["intervals"]], float)[ok]
                ax.errorbar(steps[ok], xs[ok], yerr=[xs[ok] - lo, hi - xs[ok]], fmt="o-", color=f"C{i}", capsize=3,
                            label=f"midpoint, B={ladder['batch_size']}")
        for j, c in enumerate(c for c in analysis["crossings"] if c["kind"] == axes.STEPS):
            x = c["log2_num_tasks"]
            if x is not None and math.isfinite(x):
                located = True
                ax.errorbar([math.sqrt(c["small"][1] * c["large"][1])], [x],
                            yerr=[[x - c["interval"][0]], [c["interval"][1] - x]], fmt="s", color="0.3", capsize=3,
                            label=f"crossing N={c['small'][1]:,} vs {c['large'][1]:,}" if j == 0 else None)
        all_steps = sorted({s for ladder in ladders for s in ladder["steps"]})
        if all_steps:
            ax.set_xscale("log")
            ax.set_xticks(all_steps, [f"{s:,}" for s in all_steps])
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
            ax.set_xlim(all_steps[0] / 1.5, all_steps[-1] * 1.5)
        if located:
            ax.legend(loc="best")
        else:
            ax.text(0.5, 0.5, "M* not located at any length", ha="center", transform=ax.transAxes)
        ax.set_xlabel("training steps N")
        ax.set_ylabel(r"$\log_2 M^*$ (95% interval)")
        ax.set_title("threshold against training length")
        ax = axs[2]
        t_star = analysis.get("t_star", [])
        for i, ladder in enumerate(ladders):
            batch = ladder["batch_size"]
            for steps in ladder["steps"]:
                pts = sorted((p for p in t_star if p["batch_size"] == batch and p["steps"] == steps
                              and p["num_tasks"] > 0), key=lambda p: p["num_tasks"])
                _t_star_fractions(ax, pts, steps, styles[(batch, steps)], f"C{i}", _short_budget((batch, steps)))
        ax.axhline(1.0, color="0.6", lw=0.8, ls=":")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("number of pretraining tasks M")
        ax.set_ylabel("t* / N (closest approach to ridge)")
        ax.set_title("t* / N: seed-mean curve (95% interval; ▲ past the end, ▼ at the start), seeds faded",
                     fontsize=9)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best")
        fig.suptitle(f"longer training: does the threshold move? ({_seeds_note(analysis)})")
        fig.tight_layout()
    return fig


def _t_star_fractions(ax, pts: Sequence[Mapping], steps: int, style: str, color: str, label: str) -> None:
    """t*/N of the seed-mean curve per M with its interval (to 1 where open past the end), ▲ at 1 where that curve
    is closest to ridge at or past the end, ▼ at 0 where at its first evaluation, and each seed's own t*/N faded
    (censored seeds at 0 or 1)."""
    if not pts:
        return
    m = np.array([p["num_tasks"] for p in pts], float)
    status = [p.get("t_star_seed_mean_status") for p in pts]
    value = np.array([p["t_star_seed_mean"] for p in pts], float) / steps
    at_end = np.array([s == dynamics.AT_END for s in status])
    at_start = np.array([s == dynamics.AT_START for s in status])
    located = np.array([s == dynamics.LOCATED for s in status])
    ax.plot(m, np.where(at_end, 1.0, np.where(located, value, np.where(at_start, 0.0, math.nan))), style,
            color=color, lw=1, label=label)
    ax.plot(m[located], value[located], "o", color=color, ms=4)
    ax.plot(m[at_end], np.ones(at_end.sum()), "^", color=color, ms=5)
    ax.plot(m[at_start], np.zeros(at_start.sum()), "v", color=color, ms=5)
    for x, p in zip(m[located], [p for p, ok in zip(pts, located) if ok]):
        lo, hi = (min(v / steps, 1.0) for v in p["t_star_seed_mean_interval"])
        if not (math.isnan(lo) or math.isnan(hi)):
            ax.plot([x, x], [lo, hi], color=color, lw=1)
    seeds = [(x, min(v / steps, 1.0)) for x, p in zip(m, pts) for v in p.get("t_star_seeds", [])]
    if seeds:
        ax.plot(*zip(*seeds), "o", color=color, ms=3, alpha=0.3, mew=0)


def _axis_points(entries: Sequence[Mapping], axis: str):
    xs = np.array([e["value"][axis] for e in entries], float)
    ys = np.array([e["primary"]["log2_num_tasks"] for e in entries], float)
    lo = np.array([e["primary"]["interval"][0] for e in entries], float)
    hi = np.array([e["primary"]["interval"][1] for e in entries], float)
    return xs, ys, lo, hi


def dimension_figure(analysis: Mapping):
    """M* against D (log-log, with M* ∝ D through the smallest D), κ* = M*/D, Δ_{dMMSE,Ridge} at the largest M, and
    the curves Δ_{PT,Ridge}/Δ_{dMMSE,Ridge} against M/D for every D."""
    entries = analysis["entries"]
    dims, ys, lo, hi = _axis_points(entries, axes.DIM)
    with plt.rc_context(STYLE):
        fig, axs = plt.subplots(1, 4, figsize=(15, 3.6))
        ax = axs[0]
        _ratio_panel(ax, analysis.get("ratio_curves", []),
                     [(f"D={int(d)}", {"value": {axes.DIM: e["value"][axes.DIM]}}, "-",
                       SERIES_COLORS[i % len(SERIES_COLORS)]) for i, (d, e) in enumerate(zip(dims, entries))],
                     x_scale=lambda select: select["value"][axes.DIM])
        ax.set_xlabel("M / D")
        ax.set_title("transition against M/D (seed range shaded)")
        ax = axs[1]
        _interval_bars(ax, dims, 2**ys, 2**lo, 2**hi, log=True, fmt="o", color=COLORS[names.PT])
        first = next((i for i in range(len(ys)) if np.isfinite(ys[i])), None)
        if first is not None:  # through the smallest D whose M* is located
            ax.plot(dims, 2 ** ys[first] * dims / dims[first], "--", color="0.5", lw=1)
        _mark_not_located(ax, dims, ys)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(base=2, subs=(1.0, 1.5)))
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xticks(dims, [str(int(d)) for d in dims])
        ax.set_xlabel(AXIS_LABELS[axes.DIM])
        ax.set_ylabel("M*")
        located = [int(d) for d, y in zip(dims, ys) if np.isfinite(y)]
        slope = (f"slope of log M* on log D over D = {', '.join(map(str, located))}: {analysis['log2_slope']:.2f}, "
                 "no interval" if len(located) >= 2 else "no slope: fewer than two D located")
        ax.set_title(f"M* against D (95% intervals; ▲ above the grid; dashed: M* ∝ D)\n{slope}", fontsize=9)
        ax = axs[2]
        kappa = np.array([e["kappa"]["value"] for e in entries], float)
        k_lo = np.array([e["kappa"]["interval"][0] for e in entries], float)
        k_hi = np.array([e["kappa"]["interval"][1] for e in entries], float)
        _interval_bars(ax, dims, kappa, k_lo, k_hi, fmt="o-", color=COLORS[names.PT])
        _mark_not_located(ax, dims, kappa)
        ax.set_xscale("log", base=2)
        ax.set_xticks(dims, [str(int(d)) for d in dims])
        ax.set_xlabel(AXIS_LABELS[axes.DIM])
        ax.set_ylabel("κ* = M*/D")
        ax.set_title("threshold per dimension (▲ above the grid)")
        ax = axs[3]
        d = [e["dmmse_ridge_at_largest"] for e in entries]
        mean = np.array([s["mean"] for s in d])
        ax.errorbar(dims, mean, yerr=[mean - np.array([s["min"] for s in d]), np.array([s["max"] for s in d]) - mean],
                    fmt="o-", color=COLORS["dmmse_ridge"], capsize=3)
        for dim, e, y in zip(dims, entries, mean):
            ax.annotate(f"M={e['largest_num_tasks']}", (dim, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.set_xscale("log", base=2)
        ax.set_xticks(dims, [str(int(d)) for d in dims])
        ax.set_xlabel(AXIS_LABELS[axes.DIM])
        ax.set_ylabel(f"{names.LABELS['dmmse_ridge']} on {names.LABELS[names.TRUE]}")
        ax.set_title("dMMSE vs ridge at the largest M")
        fig.suptitle(f"dimension scaling ({_seeds_note(analysis)}; intervals: 95% bootstrap, bars: seed range)")
        fig.tight_layout()
    return fig


SHORT_AXIS = {axes.WEIGHT_DECAY: "wd", axes.WIDTH: "d", axes.DEPTH: "L", axes.DIM: "D"}


def _interval_bars(ax, xs, ys, lo, hi, *, log: bool = False, **style) -> None:
    """Points with their 95% interval as error bars. An interval open beyond the grid (±inf, or ≤ 0 on a log axis)
    is drawn to just past the panel's finite values and ends in an arrow. An estimate beyond the grid (M* above or
    below every M of the sweep: ±inf, or 0 on a log axis) is a large arrow at that edge with its bar from the
    finite end of its interval; one not located at all (NaN) is left out (`_mark_not_located` labels it)."""
    xs, ys, lo, hi = (np.asarray(v, float) for v in (xs, ys, lo, hi))
    located = np.isfinite(ys) & (ys > 0 if log else True)
    above = ys == math.inf
    below = (ys == -math.inf) | ((ys == 0) if log else False)
    open_lo = ~np.isfinite(lo) | (lo <= 0 if log else False)
    open_hi = ~np.isfinite(hi)
    finite = np.concatenate([ys[located], lo[~open_lo], hi[~open_hi]])
    pad = (lambda v, k: v * 2.0 ** (0.5 * k)) if log else (lambda v, k: v + 0.5 * k)
    bottom, top = (pad(finite.min(), -1), pad(finite.max(), 1)) if finite.size else (math.nan, math.nan)
    lo_drawn, hi_drawn = np.where(open_lo, bottom, lo), np.where(open_hi, top, hi)
    err = np.where(located, [ys - lo_drawn, hi_drawn - ys], 0.0)
    ax.errorbar(xs, np.where(located, ys, math.nan), yerr=err, capsize=3, **style)
    color = style.get("color")
    for is_open, end, marker in ((open_lo & located, bottom, "v"), (open_hi & located, top, "^")):
        if is_open.any():
            ax.plot(xs[is_open], np.full(is_open.sum(), end), marker, color=color, ms=5, ls="none")
    for beyond, edge, marker in ((above, top, "^"), (below, bottom, "v")):  # the callers' labels say what ▲ ▼ mean
        for x, start, end in zip(xs[beyond], lo_drawn[beyond], hi_drawn[beyond]):
            ax.plot([x, x], [start, edge] if marker == "^" else [edge, end], color=color, lw=1.2)
            ax.plot([x], [edge], marker, color=color, ms=7, ls="none")


def _mark_not_located(ax, xs, ys, row: int = 0, color: str = "0.4") -> None:
    """Writes "not located" at the bottom of the panel above each x whose estimate is NaN (`row`: the how many-th
    series of the panel, stacked upwards so that the series' labels do not overlap); estimates beyond the grid are
    drawn by `_interval_bars`."""
    for x, y in zip(xs, ys):
        if np.isnan(y):
            ax.annotate("not\nlocated", (x, 0.02 + 0.1 * row), xycoords=("data", "axes fraction"), ha="center",
                        fontsize=7, color=color)


def _series_label(fixed: Mapping) -> str:
    return ", ".join(f"{SHORT_AXIS[a]}={v}" for a, v in fixed.items())


def _axis_positions(values: np.ndarray, axis: str) -> tuple[np.ndarray, list[str]]:
    """x positions: log2 for width and depth, log10 for weight decay with 0 one decade left of the smallest."""
    if axis == axes.WEIGHT_DECAY:
        positive = values[values > 0]
        zero_x = (np.log10(positive.min()) - 1) if len(positive) else 0.0
        xs = np.array([np.log10(v) if v > 0 else zero_x for v in values])
        return xs, ["0" if v == 0 else f"{v:g}" for v in values]
    return np.log2(values), [f"{int(v)}" for v in values]


def capacity_figure(analysis: Mapping, axis: str):
    """M* against one axis, one series per setting of the other two, and the L/D of the M = ∞ model on T_true (what
    the setting costs where diversity is unlimited), ridge's L/D for reference."""
    series = analysis["series"].get(axis, [])
    with plt.rc_context(STYLE):
        fig, axs = plt.subplots(1, 3, figsize=(13.5, 3.6))
        all_ticks = {}
        for i, s in enumerate(series):
            color = SERIES_COLORS[i % len(SERIES_COLORS)]
            values, ys, lo, hi = _axis_points(s["points"], axis)
            xs, labels = _axis_positions(values, axis)
            all_ticks.update(zip(xs, labels))
            _interval_bars(axs[0], xs + 0.03 * i, ys, lo, hi, fmt="o-", color=color, label=_series_label(s["fixed"]))
            _mark_not_located(axs[0], xs + 0.03 * i, ys, row=i, color=color)
            loss = [p["infinite_true_loss"] for p in s["points"]]
            mean = np.array([l["mean"] if l else math.nan for l in loss])
            spread = np.array([[l["mean"] - l["min"], l["max"] - l["mean"]] if l else [math.nan] * 2 for l in loss]).T
            axs[1].errorbar(xs + 0.03 * i, mean, yerr=spread, fmt="o-", color=color, capsize=3,
                            label=_series_label(s["fixed"]))
        axs[1].axhline(analysis["ridge_true_loss"], color=COLORS[names.RIDGE], lw=1, ls="--", label="ridge")
        cmap = plt.get_cmap("viridis")
        axis_values = sorted({p["value"][axis] for s_ in series for p in s_["points"]})  # one colour per value
        lines = []
        for i, s_ in enumerate(series):
            for value in (p["value"] for p in s_["points"]):
                rank = axis_values.index(value[axis])
                lines.append((f"{_series_label(s_['fixed'])}, {SHORT_AXIS[axis]}={value[axis]}",
                              {"value": value}, BUDGET_STYLES[i % len(BUDGET_STYLES)],
                              cmap(0.9 * rank / max(1, len(axis_values) - 1))))
        _ratio_panel(axs[2], analysis.get("ratio_curves", []), lines, legend_outside=True)
        axs[2].set_xlabel("number of pretraining tasks M")
        axs[2].set_title("the curve the midpoint reads (1/2 dotted)")
        for ax in axs[:2]:
            if all_ticks:
                ax.set_xticks(list(all_ticks), list(all_ticks.values()))
                ax.set_xlim(min(all_ticks) - 0.3, max(all_ticks) + 0.3 + 0.03 * (len(series) - 1))
            ax.set_xlabel(AXIS_LABELS[axis])
            ax.legend(loc="best")
        axs[0].set_ylabel(r"$\log_2 M^*$ (95% interval; ▲ above the grid)")
        axs[0].set_title(f"threshold against {AXIS_LABELS[axis]}")
        axs[1].set_ylabel(f"L/D of the M = ∞ model on {names.LABELS[names.TRUE]}")
        axs[1].set_title("loss where diversity is unlimited (bars: seed range)")
        method = {e["primary"]["method"].split(" ")[0] for s in series for e in s["points"]}
        fig.suptitle(f"{AXIS_LABELS[axis]} ({_seeds_note(analysis)}; estimate: {', '.join(sorted(method))})")
        fig.tight_layout()
    return fig


def above_threshold_figure(analysis: Mapping):
    """Final Δ^{T_true}_{PT,Ridge} and L/D on T_true against M for each budget (filled: above that budget's M*, open:
    at or below it, or everywhere when M* is not located), the M = ∞ model as a band (seed range); one line style per
    budget, bars: seed range."""
    keys = (names.THRESHOLD_METRIC, names.loss_key(names.TRUE, names.PT))
    ylabels = (f"{names.LABELS['pt_ridge']} on {names.LABELS[names.TRUE]}", f"L/D on {names.LABELS[names.TRUE]}")
    colors = (COLORS["pt_ridge"], COLORS[names.PT])
    with plt.rc_context(STYLE):
        fig, axs = plt.subplots(1, 2, figsize=(10, 3.8))
        for ax, key, ylabel, color in zip(axs, keys, ylabels, colors):
            for i, b in enumerate(analysis["budgets"]):
                style = BUDGET_STYLES[i % len(BUDGET_STYLES)]
                label = budget_label(*b["budget"])
                shown = b.get("all") or b["above"]
                above = {e["num_tasks"] for e in b["above"]}
                if shown:
                    m = np.array([e["num_tasks"] for e in shown], float) * (1 + 0.03 * i)
                    mean = np.array([e[key]["mean"] for e in shown])
                    err = [mean - np.array([e[key]["min"] for e in shown]),
                           np.array([e[key]["max"] for e in shown]) - mean]
                    ax.plot(m, mean, style, color=color, lw=1)
                    for j, e in enumerate(shown):
                        filled = e["num_tasks"] in above
                        ax.errorbar([m[j]], [mean[j]], yerr=[[err[0][j]], [err[1][j]]], fmt="o", color=color, ms=4,
                                    capsize=2, mfc=color if filled else "white")
                    x = b["threshold"]["log2_num_tasks"]
                    tag = f"M* ≈ {2**x:.1f} ({b['threshold_source'].split()[0]})" if x is not None and \
                        math.isfinite(x) else "M* not located"
                    ax.plot([], [], style + "o", color=color, label=f"{label}: {tag}")
                if b["infinite"]:
                    inf = b["infinite"][key]
                    ax.axhspan(inf["min"], inf["max"], color="0.5", alpha=0.12, lw=0)
                    ax.axhline(inf["mean"], color="0.3", ls=style, lw=1, label=f"M = ∞, {label}")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("number of pretraining tasks M (filled: above the budget's M*)")
            ax.set_ylabel(ylabel)
            ax.legend(loc="best", fontsize=6)
        fig.suptitle(f"final values against the M = ∞ model ({_seeds_note(analysis)}; bars and bands: seed range)")
        fig.tight_layout()
    return fig


def landscape_figure(analysis: Mapping):
    """L/D along the straight path from each finite-M model to the M = ∞ model (same seed), on the finite model's
    T_pretrain (solid) and on T_true (dashed); barrier heights against M with the ∞-vs-∞ baseline; parameter
    distance against M."""
    pairs = analysis["pairs"]
    finite = sorted({p["num_tasks"] for p in pairs if p["kind"] == "finite_vs_infinite"})
    colors = num_tasks_colors(finite + [0])
    summary = analysis["summary"]
    baseline = [e for e in summary if e["kind"] == "infinite_vs_infinite"]
    with plt.rc_context(STYLE):
        fig, axs = plt.subplots(1, 3, figsize=(13.5, 3.8))
        ax = axs[0]
        seed = min((p["seed_a"] for p in pairs if p["kind"] == "finite_vs_infinite"), default=0)
        for p in pairs:
            if p["kind"] == "finite_vs_infinite" and p["same_init"] and p["seed_a"] == seed:
                for eval_set, losses in p["loss"].items():
                    ax.plot(p["alphas"], losses, EVAL_SET_STYLES[eval_set], color=colors[p["num_tasks"]], lw=1.2,
                            label=f"M={num_tasks_label(p['num_tasks'])}" if eval_set == names.TRUE else None)
            elif p["kind"] == "infinite_vs_infinite" and seed in (p["seed_a"], p["seed_b"]):
                ax.plot(p["alphas"], p["loss"][names.TRUE], ":", color="black", lw=1.2,
                        label=f"∞ (seed {p['seed_a']}) → ∞ (seed {p['seed_b']})")
        ax.set_yscale("log")
        ax.set_xlabel("α (0: finite-M model, 1: M = ∞ model)")
        ax.set_ylabel("L/D along the path")
        ax.set_title(f"seed {seed} to the M = ∞ model of seed {seed}: solid {names.LABELS[names.PRETRAIN]}, dashed "
                     f"{names.LABELS[names.TRUE]}")
        ax.legend(loc="best", fontsize=6)
        ax = axs[1]
        for eval_set, marker in ((names.PRETRAIN, "o"), (names.TRUE, "s")):
            for same_init, fill in ((True, True), (False, False)):
                pts = [e for e in summary if e["kind"] == "finite_vs_infinite" and e["same_init"] == same_init
                       and eval_set in e["barrier"]]
                if not pts:
                    continue
                m = np.array([e["num_tasks"] for e in pts], float)
                mean = np.array([e["barrier"][eval_set]["mean"] for e in pts])
                err = [mean - np.array([e["barrier"][eval_set]["min"] for e in pts]),
                       np.array([e["barrier"][eval_set]["max"] for e in pts]) - mean]
                color = COLORS[names.DMMSE] if eval_set == names.PRETRAIN else COLORS[names.RIDGE]
                ax.errorbar(m, mean, yerr=err, fmt=marker + EVAL_SET_STYLES[eval_set], color=color, capsize=2, ms=4,
                            mfc=color if fill else "white",
                            label=f"{names.LABELS[eval_set]}, {'same' if same_init else 'other'} init")
        for e in baseline:
            b = e["barrier"][names.TRUE]
            ax.axhspan(b["min"], b["max"], color="0.5", alpha=0.15, lw=0)
            ax.axhline(b["mean"], color="0.3", lw=1, ls=":", label=f"∞ vs ∞ baseline ({names.LABELS[names.TRUE]})")
        ax.set_xscale("log", base=2)
        ax.set_yscale("symlog", linthresh=1e-3)
        ax.set_xlabel("number of pretraining tasks M")
        ax.set_ylabel("barrier height (L/D)")
        ax.set_title("barrier against M (bars: range over seed pairs)")
        ax.legend(loc="best", fontsize=6)
        ax = axs[2]
        for same_init, fill in ((True, True), (False, False)):
            pts = [e for e in summary if e["kind"] == "finite_vs_infinite" and e["same_init"] == same_init]
            if pts:
                m = np.array([e["num_tasks"] for e in pts], float)
                mean = np.array([e["distance"]["mean"] for e in pts])
                err = [mean - np.array([e["distance"]["min"] for e in pts]),
                       np.array([e["distance"]["max"] for e in pts]) - mean]
                ax.errorbar(m, mean, yerr=err, fmt="o-", color=COLORS[names.PT], capsize=2,
                            mfc=COLORS[names.PT] if fill else "white",
                            label=f"to M = ∞, {'same' if same_init else 'other'} init")
        for e in baseline:
            ax.axhspan(e["distance"]["min"], e["distance"]["max"], color="0.5", alpha=0.15, lw=0)
            ax.axhline(e["distance"]["mean"], color="0.3", lw=1, ls=":", label="∞ vs ∞ (other init)")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("number of pretraining tasks M")
        ax.set_ylabel(r"$\|\theta_M - \theta_\infty\|_2$")
        ax.set_title("distance in parameter space")
        ax.legend(loc="best", fontsize=6)
        fig.suptitle(f"loss landscape between finite-M and M = ∞ models, {budget_label(*analysis['budget'])}")
        fig.tight_layout()
    return fig


def _capacity_figures(analysis):
    return {f"capacity_{axis.split('.')[1]}": capacity_figure(analysis, axis) for axis in CAPACITY_AXES
            if analysis["series"].get(axis)}


# analysis name → {figure name: drawer}
FIGURES = {
    "budgets": lambda a: {"budgets": budgets_figure(a), "long_dynamics": long_dynamics_figure(a)},
    "dimension": lambda a: {"dimension": dimension_figure(a)},
    "capacity": _capacity_figures,
    "above_threshold": lambda a: {"above_threshold": above_threshold_figure(a)},
    "landscape": lambda a: {"landscape": landscape_figure(a)},
}


def write_experiment_figures(name: str, workdir: Path, out: Path | None = None) -> list[Path]:
    """Draws the figures of experiment `name` from `<workdir>/analysis/<name>.json` into `out` (default
    `<workdir>/figures`) as PNG and PDF: from the stored file, also right after the analysis wrote it, so that the
    figures are the same bytes whichever script draws them."""
    if name not in FIGURES:
        raise ValueError(f"unknown experiment {name!r}; allowed: {', '.join(FIGURES)}")
    analysis = read_analysis(workdir, name)
    out = Path(out) if out else Path(workdir) / "figures"
    return [path for stem, fig in FIGURES[name](analysis).items() for path in save(fig, out / stem)]
