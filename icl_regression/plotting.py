"""Figures drawn from stored results only (sweep summaries and metrics records): matplotlib, no jax.

One visual language for every figure, so a reader learns it once:
- Line style means the data budget, and only that: solid = the smallest budget (batch × steps), dashed = the next,
  dotted, dash-dot (`BUDGET_STYLES`, in `threshold.budgets` order). Legends draw handles long enough to show it.
- Colour means the predictor or the pair of predictors (`COLORS`): transformer blue, ridge red, dMMSE green,
  Δ_{dMMSE,Ridge} grey; in the dynamics figure, where the budget has its own panel, colour means M (viridis over
  log2 M, black for M = ∞).
- The trained transformer is drawn with thick lines and filled markers; the estimators (ridge, dMMSE and
  Δ_{dMMSE,Ridge}, which do not depend on the budget) with thin lines and open markers.
- Seeds: the line is the mean over a cell's finished seeds; each seed is a small faded point of the same colour.
- M axes are log2 M with M = ∞ drawn at the right end. The threshold is a black vertical line with its 95% interval
  shaded grey; midpoint estimates are open diamonds with their intervals as horizontal bars. Legends sit outside
  the axes, never on a shaded band.
"""

from __future__ import annotations

import io
import math
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.patches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

from icl_regression import dynamics as dynamics_lib  # noqa: E402
from icl_regression import names, results, threshold  # noqa: E402
from icl_regression.config import num_tasks_label, parse_num_tasks  # noqa: E402
from icl_regression.store import StoreError, atomic_write_bytes, results_folder  # noqa: E402

COLORS = {names.PT: "#1f4e9c", names.RIDGE: "#d1495b", names.DMMSE: "#2e933c",
          "pt_ridge": "#d1495b", "pt_dmmse": "#2e933c", "dmmse_ridge": "#7f7f7f"}
BUDGET_STYLES = ("-", "--", ":", "-.")
ESTIMATORS = (names.RIDGE, names.DMMSE, "dmmse_ridge")  # drawn once: they do not depend on the budget
TRAINED_LINE = {"lw": 1.6, "marker": "o", "ms": 3.5}
ESTIMATOR_LINE = {"lw": 0.9, "ms": 3.5, "mfc": "white"}
ESTIMATOR_MARKERS = {names.RIDGE: "s", names.DMMSE: "^", "dmmse_ridge": "s"}  # ridge and dMMSE apart where equal
SEED_POINTS = {"ls": "", "marker": "o", "ms": 2.2, "alpha": 0.4, "mew": 0}
THRESHOLD_COLOR, INTERVAL_COLOR = "black", "0.85"
LEGEND = {"handlelength": 4.0, "frameon": False}
STYLE = {"figure.dpi": 120, "font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "legend.fontsize": 7.5,
         "axes.spines.top": False, "axes.spines.right": False}


def save(fig, stem: Path) -> list[Path]:
    """Writes `<stem>.png` and `<stem>.pdf` atomically (two processes drawing the same sweep's figures never leave a
    torn file) and closes the figure. No creation date in the PDF: the same results give the same bytes, so
    regenerating committed figures changes only what changed."""
    stem = Path(stem)  # a stem may hold dots of its own ("sweep_D=1_K=4_noise_std=0.353553")
    paths = [stem.parent / f"{stem.name}.png", stem.parent / f"{stem.name}.pdf"]
    for path in paths:
        buffer = io.BytesIO()
        fig.savefig(buffer, format=path.suffix[1:], bbox_inches="tight",
                    metadata={"CreationDate": None} if path.suffix == ".pdf" else None)
        atomic_write_bytes(path, buffer.getvalue())
    plt.close(fig)
    return paths


def budget_label(batch_size: int, steps: int) -> str:
    return f"B={batch_size}, N={steps:,}"


def budget_style(budget, budgets: Sequence) -> str:
    """The line style of `budget` among a sweep's `budgets` (smallest first)."""
    return BUDGET_STYLES[list(budgets).index(tuple(budget)) % len(BUDGET_STYLES)]


def _infinite_x(finite_xs: Sequence[float]) -> float:
    return (max(finite_xs) if finite_xs else 0.0) + 1.5


def _x_of(num_tasks: int, inf_x: float) -> float:
    return inf_x if num_tasks <= 0 else math.log2(num_tasks)


def _log2_axis(ax, finite_xs: Sequence[float], inf_x: float, has_inf: bool) -> None:
    ticks = sorted(set(int(x) for x in finite_xs))
    step = max(1, math.ceil(len(ticks) / 8))
    ticks = ticks[::step]
    labels = [f"$2^{{{t}}}$" for t in ticks]
    if has_inf:
        ticks, labels = ticks + [inf_x], labels + [r"$\infty$"]
    ax.set_xticks(ticks, labels)
    ax.set_xlabel("number of pretraining tasks M")


def _shade_interval(ax, estimate: float, interval: Sequence[float], x_range: tuple[float, float]) -> None:
    """The threshold as a vertical line with its interval shaded; interval ends beyond the grid reach the axis end."""
    lo, hi = (min(max(v, x_range[0]), x_range[1]) if not math.isnan(v) else math.nan for v in interval)
    if math.isfinite(lo) and math.isfinite(hi):
        ax.axvspan(lo, hi, color=INTERVAL_COLOR, zorder=0, lw=0)
    if math.isfinite(estimate):
        ax.axvline(estimate, color=THRESHOLD_COLOR, lw=1, zorder=1)


def _line(name: str) -> dict:
    """Line properties of a predictor or pair: thick with filled markers if trained, thin with open ones if not."""
    return dict(ESTIMATOR_LINE, marker=ESTIMATOR_MARKERS[name]) if name in ESTIMATORS else dict(TRAINED_LINE)


def seed_values(rows: Sequence[dict], key: str) -> dict:
    """{budget: {M: [value of each finished seed]}}; diverged seeds are left out."""
    out: dict = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if row["status"] == names.DONE:
            out[(row["batch_size"], row["steps"])][row["num_tasks"]].append(row["final"][key])
    return out


def cell_curves(rows: Sequence[dict], key: str) -> dict:
    """{(batch, steps): (num_tasks array, mean array, std array)} over seeds, M ascending with ∞ last."""
    out = {}
    for budget, by_m in seed_values(rows, key).items():
        num_tasks = sorted(by_m, key=lambda m: m if m > 0 else math.inf)
        out[budget] = (np.array(num_tasks), np.array([np.mean(by_m[m]) for m in num_tasks]),
                       np.array([np.std(by_m[m]) for m in num_tasks]))
    return out


def _draw_series(ax, rows, key: str, color, budget, style: str, inf_x: float, line: Mapping, label: str) -> None:
    """Mean over seeds as a line, and each seed as a faded point."""
    by_m = seed_values(rows, key).get(budget)
    if not by_m:
        return
    num_tasks = [m for m in sorted(by_m, key=lambda m: m if m > 0 else math.inf) if np.mean(by_m[m]) > 0]
    xs = np.array([_x_of(m, inf_x) for m in num_tasks])  # zeros (Δ_dMMSE,Ridge at M = ∞) are off a log axis
    ax.plot(xs, [np.mean(by_m[m]) for m in num_tasks], style, color=color, label=label, **line)
    if any(len(by_m[m]) > 1 for m in num_tasks):
        seed_x = [_x_of(m, inf_x) for m in num_tasks for _ in by_m[m]]
        ax.plot(seed_x, [v for m in num_tasks for v in by_m[m]], color=color, **SEED_POINTS)


def sweep_figure(summary: Mapping, title: str | None = None):
    """L/D, Δ_{PT,dMMSE} and Δ_{PT,Ridge} against M on T_pretrain (top) and T_true (bottom), per budget, seeds as
    points; right column: the crossing (larger minus smaller budget's Δ^{T_true}_{PT,Ridge}) and the midpoint
    curves (Δ_{PT,Ridge} − Δ_{PT,dMMSE} on T_true) with their 95% bands, zeros and estimates."""
    rows = summary["cells"]
    finite = sorted({math.log2(r["num_tasks"]) for r in rows if r["num_tasks"] > 0})
    has_inf = any(r["num_tasks"] <= 0 for r in rows)
    inf_x = _infinite_x(finite)
    budgets = threshold.budgets(rows)
    panels = [("loss", "L/D", list(names.PREDICTORS)), ("pt_dmmse", r"$\Delta_{PT,dMMSE}$", ["pt_dmmse"]),
              ("pt_ridge", r"$\Delta_{PT,Ridge}$", ["pt_ridge", "dmmse_ridge"])]
    x_range = (min(finite, default=0.0) - 0.3, (inf_x if has_inf else max(finite, default=1.0)) + 0.3)
    finite_range = (x_range[0], max(finite, default=1.0) + 0.3)  # M* and its interval live on the finite M
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(2, 4, figsize=(13.5, 6.2))
        for row_i, eval_set in enumerate(names.EVAL_SETS):
            for col, (kind, ylabel, series) in enumerate(panels):
                ax = axes[row_i, col]
                for name in series:
                    key = names.loss_key(eval_set, name) if kind == "loss" else names.delta_key(eval_set, name)
                    estimator = name in ESTIMATORS
                    for budget in budgets[:1] if estimator else budgets:
                        label = (f"{names.LABELS[name]} (estimator)" if estimator
                                 else f"{names.LABELS[name]}, {budget_label(*budget)}")
                        _draw_series(ax, rows, key, COLORS[name], budget, "-" if estimator else
                                     budget_style(budget, budgets), inf_x, _line(name), label)
                ax.set_yscale("log")
                ax.set_ylabel(f"{ylabel} on {names.LABELS[eval_set]}")
                if eval_set == names.TRUE:
                    _shade_interval(ax, summary["threshold_log2_num_tasks"], summary["threshold_interval"],
                                    finite_range)
                _log2_axis(ax, finite, inf_x, has_inf)
                ax.set_xlim(*x_range)
        _crossing_panel(axes[0, 3], summary, rows)
        _midpoint_panel(axes[1, 3], summary, rows, budgets)
        _sweep_legend(fig, axes, budgets)
        fig.suptitle(title or sweep_title(summary))
        fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig


def _seed_differences(curve: threshold.SignedCurve) -> tuple[list[float], list[float]]:
    xs = [x for row in curve.per_seed for x, v in zip(curve.xs, row) if np.isfinite(v)]
    return xs, [v for row in curve.per_seed for v in row if np.isfinite(v)]


def _signed_panel(ax, estimate: Mapping, curve: threshold.SignedCurve, color, style: str, label: str) -> None:
    """A signed curve's seed mean with its per-M 95% band and each seed's value."""
    per_m = estimate.get("per_num_tasks", [])
    if not per_m:
        return
    xs = np.array([p["log2_num_tasks"] for p in per_m])
    ax.fill_between(xs, [p["interval"][0] for p in per_m], [p["interval"][1] for p in per_m], color=color,
                    alpha=0.15, lw=0)
    ax.plot(xs, [p["value"] for p in per_m], style, color=color, label=label, **TRAINED_LINE)
    seed_x, seed_y = _seed_differences(curve)
    if curve.num_seeds > 1:
        ax.plot(seed_x, seed_y, color=color, **SEED_POINTS)


def _finite_axis(ax, rows) -> None:
    finite = sorted({math.log2(r["num_tasks"]) for r in rows if r["num_tasks"] > 0})
    _log2_axis(ax, finite, 0.0, False)
    ax.axhline(0.0, color="0.5", lw=0.8, zorder=0)
    ax.set_xlim(min(finite, default=0.0) - 0.3, max(finite, default=1.0) + 0.3)


def _crossing_panel(ax, summary: Mapping, rows) -> None:
    """The paired difference of the first budget pair (`threshold.budget_pairs`, the one M* is read from) with its
    band; the crossing is where it meets zero."""
    if not summary.get("crossing"):
        ax.text(0.5, 0.5, "one data budget: no crossing\n(the midpoint below needs only one)", ha="center",
                va="center", transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
        return
    label, estimate = threshold.in_budget_order(summary["crossing"])[0]
    small, large = (threshold.parse_budget_key(key) for key in label.split("_vs_"))
    curve = threshold.crossing_curve(rows, small, large)
    finite = sorted({math.log2(r["num_tasks"]) for r in rows if r["num_tasks"] > 0})
    x_range = (min(finite) - 0.3, max(finite) + 0.3)
    _shade_interval(ax, estimate["log2_num_tasks"], estimate["interval"], x_range)
    _signed_panel(ax, estimate, curve, COLORS[names.PT], "-", "larger − smaller budget")
    for change in estimate.get("sign_changes", []):
        if not change["is_threshold"]:
            ax.plot([change["log2_num_tasks"]], [0.0], "o", color=THRESHOLD_COLOR, mfc="white", ms=4, zorder=3)
    _finite_axis(ax, rows)
    ax.set_ylabel(r"$\Delta_{PT,Ridge}$ on $T_{true}$" + f": B={large[0]}, N={large[1]:,}\nminus B={small[0]}, "
                  f"N={small[1]:,}")
    ax.set_title("crossing: > 0 more data moves away from ridge,\n< 0 more data moves towards ridge")


def _midpoint_panel(ax, summary: Mapping, rows, budgets) -> None:
    """Per budget, Δ_{PT,Ridge} − Δ_{PT,dMMSE} on T_true: zero where the model is as far from ridge as from
    dMMSE."""
    for budget in budgets:
        estimate = summary.get("midpoint", {}).get(threshold.budget_key(budget))
        if not estimate:
            continue
        style = budget_style(budget, budgets)
        curve = threshold.midpoint_curve(rows, budget)
        _signed_panel(ax, estimate, curve, COLORS[names.DMMSE], style, budget_label(*budget))
        x, (lo, hi) = estimate["log2_num_tasks"], estimate["interval"]
        if math.isfinite(x):
            finite = sorted({math.log2(r["num_tasks"]) for r in rows if r["num_tasks"] > 0})
            lo, hi = max(lo, finite[0] - 0.3), min(hi, finite[-1] + 0.3)
            ax.errorbar([x], [0.0], xerr=[[x - lo], [hi - x]], fmt="D", color=THRESHOLD_COLOR, mfc="white", ms=5,
                        capsize=3, lw=1, zorder=4)
    _finite_axis(ax, rows)
    ax.set_ylabel(r"$\Delta_{PT,Ridge} - \Delta_{PT,dMMSE}$ on $T_{true}$")
    ax.set_title("midpoint: > 0 closer to dMMSE,\n< 0 closer to ridge (equal RMS distance at 0)")


def _sweep_legend(fig, axes, budgets) -> None:
    """One legend below the panels: budgets (line styles), what each colour is, seeds, threshold and midpoints."""
    handles = [plt.Line2D([], [], color="0.2", ls=budget_style(b, budgets), lw=1.6, marker="o", ms=3.5)
               for b in budgets]
    labels = [f"transformer, {budget_label(*b)}" for b in budgets]
    for name in (names.PT, names.RIDGE, names.DMMSE, "pt_dmmse", "pt_ridge", "dmmse_ridge"):
        handles.append(plt.Line2D([], [], color=COLORS[name], **_line(name)))
        labels.append(names.LABELS[name] + (" (estimator)" if name in ESTIMATORS else "")
                      + (": 0 at M = ∞, off the log axis" if name == "dmmse_ridge" else ""))
    handles += [plt.Line2D([], [], color="0.3", **SEED_POINTS),
                plt.Line2D([], [], color=THRESHOLD_COLOR, lw=1),
                matplotlib.patches.Patch(color=INTERVAL_COLOR),
                plt.Line2D([], [], ls="", marker="D", color=THRESHOLD_COLOR, mfc="white", ms=5),
                matplotlib.patches.Patch(color=COLORS[names.PT], alpha=0.15)]
    labels += ["one seed", "threshold M*", "its 95% interval", "midpoint M* (bar: 95% interval)",
               "95% band of a difference"]
    fig.legend(handles, labels, loc="lower center", ncol=5, **LEGEND)


def sweep_title(summary: Mapping) -> str:
    """The training budgets, the seeds, and the threshold with its interval and what the interval covers."""
    rows = summary["cells"]
    budgets = threshold.budgets(rows)
    seeds = sorted({r["seed"] for r in rows})
    styles = {"-": "solid", "--": "dashed", ":": "dotted", "-.": "dash-dot"}
    trained = ", ".join(f"{budget_label(*b)} ({styles[budget_style(b, budgets)]})" for b in budgets)
    head = f"task-diversity sweep, trained at {trained}; {len(seeds)} seed{'s' if len(seeds) != 1 else ''} per cell"
    if summary.get("setting"):
        head = f"{summary['setting']}: " + head
    x = summary.get("threshold_log2_num_tasks", math.nan)
    if x is None or math.isnan(x):
        return head + "\nthreshold not located (no finite-M cells)"
    lo, hi = summary["threshold_interval"]
    source = summary.get("interval_source", "evaluation sequences")
    where = f"log2 M* = {x:.2f}" if math.isfinite(x) else f"M* {results.format_log2(x)} of this sweep's M"
    return (head + f"\nthreshold ({summary['method']}): {where}, 95% interval "
            f"[{results.format_log2(lo)}, {results.format_log2(hi)}]\ninterval over {source}")


# --- Training dynamics, per-position curves, and every figure written from a results folder. ---


INFINITE_COLOR = "black"  # M = ∞ against a colour map over log2 M
NUM_TASKS_CMAP = "viridis"


def _budgets_of(rows: Sequence[dict]) -> list[tuple[int, int]]:
    """(batch, steps) budgets, smallest batch × steps first (as in threshold.budgets)."""
    return sorted({(r["batch_size"], r["steps"]) for r in rows}, key=lambda b: (b[0] * b[1], b))


def _sorted_num_tasks(values) -> list[int]:
    return sorted(set(values), key=lambda m: m if m > 0 else math.inf)


def num_tasks_colors(num_tasks_values: Sequence[int]) -> dict:
    """{M: colour}: a colour map over log2 M for finite M, black for M = ∞."""
    finite = sorted({m for m in num_tasks_values if m > 0})
    cmap = plt.get_cmap(NUM_TASKS_CMAP)
    lo, hi = (math.log2(finite[0]), math.log2(finite[-1])) if finite else (0.0, 1.0)
    colors = {m: cmap(0.9 * (math.log2(m) - lo) / (hi - lo) if hi > lo else 0.0) for m in finite}
    colors.update({m: INFINITE_COLOR for m in num_tasks_values if m <= 0})
    return colors


def _done_runs(rows: Sequence[dict], budget, num_tasks: int) -> list[str]:
    return [r["name"] for r in rows if r["status"] == names.DONE and r["num_tasks"] == num_tasks
            and (r["batch_size"], r["steps"]) == budget]


def seed_mean_curve(metrics_by_run: Mapping[str, Sequence[dict]], run_names: Sequence[str],
                    key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, mean over runs of `key`) at the steps every run evaluated."""
    curves = [dynamics_lib.metric_curve(metrics_by_run.get(name, []), key) for name in run_names]
    curves = [c for c in curves if len(c[0])]
    if not curves:
        return np.array([], dtype=np.int64), np.array([])
    common = sorted(set.intersection(*(set(steps.tolist()) for steps, _ in curves)))
    values = [np.array([dict(zip(steps.tolist(), vals))[s] for s in common]) for steps, vals in curves]
    return np.array(common, dtype=np.int64), np.mean(values, axis=0)


def _inner(dynamics: Mapping) -> Mapping:
    return dynamics.get("dynamics", dynamics)


DEFINITION_COLORS = {dynamics_lib.RIDGE: COLORS["pt_ridge"], dynamics_lib.LOSS: COLORS[names.PT],
                     dynamics_lib.MIXTURE: COLORS[names.DMMSE]}
DEFINITION_MARKERS = {dynamics_lib.RIDGE: "o", dynamics_lib.LOSS: "s", dynamics_lib.MIXTURE: "D"}
PANEL_TITLES = {dynamics_lib.RIDGE: "t* (a): closest approach to ridge",
                dynamics_lib.LOSS: "t* (b): lowest loss on new tasks",
                dynamics_lib.MIXTURE: "t* (c): a falls through 1/2, PT ≈ a·ridge + (1−a)·dMMSE"}


def _residual_fraction(metrics_by_run, run_names) -> tuple[np.ndarray, np.ndarray]:
    """(steps, mixture residual / min(Δ_PT,Ridge, Δ_PT,dMMSE)) on T_true, means over seeds and positions: the part
    of the model's distance to the nearer pure strategy that the best mixture of the two leaves unexplained."""
    steps, residual = seed_mean_curve(metrics_by_run, run_names, names.mixture_residual_key(names.TRUE))
    _, to_ridge = seed_mean_curve(metrics_by_run, run_names, names.THRESHOLD_METRIC)
    _, to_dmmse = seed_mean_curve(metrics_by_run, run_names, names.delta_key(names.TRUE, "pt_dmmse"))
    if not len(steps) or len(to_ridge) != len(steps) or len(to_dmmse) != len(steps):
        return np.array([], dtype=np.int64), np.array([])
    with np.errstate(divide="ignore", invalid="ignore"):
        return steps, residual / np.minimum(to_ridge, to_dmmse)


def _mark_t_star(ax, steps, values, entry: Mapping, color, filled: bool) -> None:
    """t* on a curve (at the curve's value there), with its interval as a horizontal bar; only t*s inside the run."""
    if entry["status"] != dynamics_lib.LOCATED or not len(steps):
        return
    t_star = entry["value"]
    y = float(np.interp(math.log(t_star), np.log(np.maximum(steps, 1)), values))
    lo, hi = entry["interval"]
    if math.isfinite(lo) and math.isfinite(hi):
        ax.plot([lo, hi], [y, y], color=color, lw=2.2, alpha=0.45, solid_capstyle="butt", zorder=3)
    ax.plot([t_star], [y], "o", ms=5, color=color, mfc=color if filled else "white", zorder=4)


def dynamics_figure(metrics_by_run: Mapping[str, Sequence[dict]], rows: Sequence[dict], dynamics: Mapping,
                    title: str | None = None):
    """The training dynamics on T_true, one line per M (colour) and data budget (line style), means over seeds
    (each seed faded):
    Δ_PT,Ridge, the model's L/D, its ridge weight a and what the best mixture a·ridge + (1 − a)·dMMSE leaves
    unexplained, against step; t* by each definition marked on its curve with its 95% interval (filled: M is
    transient; open: monotone or unresolved); t* against M on log-log axes with the power laws t* ∝ M^α."""
    dyn = _inner(dynamics)
    budgets = _budgets_of(rows)
    styles = {b: BUDGET_STYLES[i % len(BUDGET_STYLES)] for i, b in enumerate(budgets)}
    all_m = _sorted_num_tasks(r["num_tasks"] for r in rows)
    colors = num_tasks_colors(all_m)
    points = {(p["batch_size"], p["steps"], p["num_tasks"]): p for p in dyn["per_num_tasks"]}
    true = names.LABELS[names.TRUE]
    panels = [(dynamics_lib.RIDGE, f"{names.LABELS['pt_ridge']} on {true}", "log"),
              (dynamics_lib.LOSS, f"L/D of the transformer on {true}", "log"),
              (dynamics_lib.MIXTURE, f"ridge weight a on {true}", "linear")]
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(2, 3, figsize=(13, 7.2))
        for ax, (definition, ylabel, yscale) in zip(axes[0], panels):
            key = dynamics_lib.DEFINITION_KEYS[definition]
            for budget in budgets:
                for m in all_m:
                    steps, values = seed_mean_curve(metrics_by_run, _done_runs(rows, budget, m), key)
                    keep = (steps > 0) & np.isfinite(values) if len(steps) else np.array([], bool)
                    if not keep.any():
                        continue
                    ax.plot(steps[keep], values[keep], styles[budget], color=colors[m], lw=1.4)
                    for run in _done_runs(rows, budget, m):  # each seed, faded
                        run_steps, run_values = dynamics_lib.metric_curve(metrics_by_run.get(run, []), key)
                        shown = (run_steps > 0) & np.isfinite(run_values)
                        ax.plot(run_steps[shown], run_values[shown], styles[budget], color=colors[m], lw=0.5,
                                alpha=0.3)
                    point = points.get((*budget, m))
                    if point is not None:
                        _mark_t_star(ax, steps[keep], values[keep], point["t_star"][definition], colors[m],
                                     point["kind"] == dynamics_lib.TRANSIENT)
            ax.set_yscale(yscale)
            ax.set_ylabel(ylabel)
            ax.set_title(PANEL_TITLES[definition])
            if not ax.lines:
                ax.text(0.5, 0.5, "no such metric stored\n(runs predate it, or only M = ∞)", ha="center",
                        va="center", transform=ax.transAxes)
        _ridge_loss_line(axes[0, 1], rows)
        axes[0, 2].axhline(0.5, color="0.5", lw=0.8, zorder=0)
        axes[0, 2].set_ylim(-0.02, 1.02)
        _residual_panel(axes[1, 0], metrics_by_run, rows, budgets, styles, all_m, colors)
        for ax in list(axes[0]) + [axes[1, 0]]:
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # 3×10², 4×10², … collided
            ax.set_xlabel("training step")
        _t_star_panel(axes[1, 1], dyn, budgets, styles)
        _dynamics_legend(axes[1, 2], all_m, colors, budgets, styles, _interval_note(dyn))
        fig.suptitle(title or "training dynamics: approach to ridge, the turn to the pool, and t* three ways")
        fig.tight_layout()
    return fig


def _ridge_loss_line(ax, rows) -> None:
    """Ridge's L/D on T_true (the floor of the model's loss) as a thin grey line."""
    values = [r["final"][names.loss_key(names.TRUE, names.RIDGE)] for r in rows
              if names.loss_key(names.TRUE, names.RIDGE) in r.get("final", {})]
    if values:
        ax.axhline(float(np.mean(values)), color="0.5", lw=0.8, zorder=0)
        ax.text(0.99, float(np.mean(values)), "ridge", color="0.4", ha="right", va="bottom",
                transform=ax.get_yaxis_transform())


def _residual_panel(ax, metrics_by_run, rows, budgets, styles, all_m, colors) -> None:
    drawn = False
    for budget in budgets:
        for m in all_m:
            steps, fraction = _residual_fraction(metrics_by_run, _done_runs(rows, budget, m))
            keep = (steps > 0) & np.isfinite(fraction) if len(steps) else np.array([], bool)
            if keep.any():
                ax.plot(steps[keep], fraction[keep], styles[budget], color=colors[m], lw=1.2)
                drawn = True
    if not drawn:
        ax.text(0.5, 0.5, "no mixture metrics stored\n(runs predate them, or only M = ∞)", ha="center",
                va="center", transform=ax.transAxes)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("unexplained by the best mixture\n(residual / min(Δ_PT,Ridge, Δ_PT,dMMSE))")
    ax.set_title("what neither strategy explains")


def _t_star_panel(ax, dyn: Mapping, budgets, styles) -> None:
    """t* against M, one marker and colour per definition, budgets side by side with their intervals in the
    budget's line style, intervals as vertical bars (an arrow: open past the end
    of the run or before the first evaluation; filled: transient M; open: the others, whose t* lies inside the run),
    each seed's own t* faded; the fitted power law of each definition over its budget's fit set."""
    plotted_m, offsets = set(), {d: f for d, f in zip(dynamics_lib.DEFINITIONS, (0.97, 1.0, 1.03))}
    for index, budget in enumerate(budgets):  # budgets side by side, bars in the budget's line style
        shift = 2 ** (0.1 * (index - (len(budgets) - 1) / 2))
        pts = [p for p in dyn["per_num_tasks"] if (p["batch_size"], p["steps"]) == budget and p["num_tasks"] > 0]
        runs = [r for r in dyn.get("per_run", []) if (r["batch_size"], r["steps"]) == budget and r["num_tasks"] > 0]
        fits = dyn["power_law_by_budget"].get(f"B={budget[0]}_N={budget[1]}", {})
        for definition in dynamics_lib.DEFINITIONS:
            color, marker = DEFINITION_COLORS[definition], DEFINITION_MARKERS[definition]
            seeds = [(r["num_tasks"] * offsets[definition] * shift, r["t_star"][definition]["value"]) for r in runs
                     if r.get("t_star", {}).get(definition, {}).get("status") == dynamics_lib.LOCATED]
            if seeds:  # each seed's own t*, faded
                ax.plot(*zip(*seeds), marker, color=color, ms=3, alpha=0.35, mew=0)
                plotted_m.update(round(x / offsets[definition] / shift) for x, _ in seeds)
            for p in pts:
                entry = p["t_star"][definition]
                if entry["status"] != dynamics_lib.LOCATED:
                    continue
                x = p["num_tasks"] * offsets[definition] * shift  # side by side where the definitions agree
                lo, hi = entry["interval"]
                if not (math.isnan(lo) or math.isnan(hi)):  # open ends (censored replicates): to the run's end
                    lo_drawn = lo if lo > 0 else entry["value"] / 2  # or half t*, with an arrow
                    hi_drawn = hi if math.isfinite(hi) else p["steps"]
                    ax.plot([x, x], [lo_drawn, hi_drawn], styles[budget], color=color, lw=1.2)
                    for drawn, is_open, arrow in ((lo_drawn, lo <= 0, "v"), (hi_drawn, math.isinf(hi), "^")):
                        if is_open:
                            ax.plot([x], [drawn], arrow, color=color, ms=4)
                filled = p["kind"] == dynamics_lib.TRANSIENT
                ax.plot([x], [entry["value"]], marker, color=color, ms=5, mfc=color if filled else "white")
                plotted_m.add(p["num_tasks"])
            fit = fits.get(definition, {})
            if math.isfinite(fit.get("alpha", math.nan)):
                lo, hi = fit["alpha_interval"]
                grid = np.geomspace(min(fit["num_tasks"]), max(fit["num_tasks"]), 50)
                label = (f"{dynamics_lib.DEFINITION_LABELS[definition]}: α = {fit['alpha']:.2f}"
                         + (f" [{lo:.2f}, {hi:.2f}]" if math.isfinite(lo) else ""))
                ax.plot(grid, fit["prefactor"] * grid ** fit["alpha"], styles[budget], color=color, lw=1,
                        label=label if len(budgets) == 1 else f"{label}, {budget_label(*budget)}")
    if plotted_m:
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ticks = sorted(plotted_m)[:: max(1, len(plotted_m) // 8)]
        ax.set_xticks(ticks, [str(m) for m in ticks])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    title = "t* against M, three ways, with t* ∝ M^α"
    if plotted_m and ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", handlelength=3.0, frameon=False)
    elif plotted_m:
        title = "t* against M, three ways\n(no power-law fit: no transient M)"
    else:
        ax.text(0.5, 0.5, "no finite M with a t* inside the run", ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_xlabel("number of pretraining tasks M")
    ax.set_ylabel("t* (training step)")
    ax.set_title(title)


def _interval_note(dyn: Mapping) -> str:
    """What the t* intervals resample (the summary's own note per M), for the legend."""
    notes = sorted({p["noise"] for p in dyn["per_num_tasks"] if p.get("noise")})
    if not notes:
        return "95% interval"
    if len(notes) > 1:
        return "95% interval (what it resamples differs by M: see the printed dynamics)"
    return "95% interval: " + notes[0].replace(" (", "\n(")


def _dynamics_legend(ax, all_m, colors, budgets, styles, interval_note: str) -> None:
    """The keys of the figure in a panel of their own: M colours, budget line styles, the t* markers."""
    ax.axis("off")
    handles = [plt.Line2D([], [], color=colors[m], lw=2) for m in all_m]
    labels = [f"M = {num_tasks_label(m)}" for m in all_m]
    handles += [plt.Line2D([], [], ls=styles[b], color="0.3") for b in budgets]
    order = ("left", "right") if len(budgets) == 2 else tuple(f"{i + 1}. from left" for i in range(len(budgets)))
    labels += [budget_label(*b) + (f" (t*: {where})" if len(budgets) > 1 else "")
               for b, where in zip(budgets, order)]
    handles += [plt.Line2D([], [], ls="", marker="o", color="0.3"),
                plt.Line2D([], [], ls="", marker="o", color="0.3", mfc="white"),
                plt.Line2D([], [], color="0.3", lw=2.2, alpha=0.45)]
    handles += [plt.Line2D([], [], color="0.3", lw=0.6, alpha=0.4, marker="o", ms=3, mew=0)]
    labels += ["t*, M transient", "t*, M monotone or unresolved", interval_note,
               "one seed (faded: single seeds' curves and t*)"]
    handles += [plt.Line2D([], [], ls="", marker=DEFINITION_MARKERS[d], color=DEFINITION_COLORS[d])
                for d in dynamics_lib.DEFINITIONS]
    labels += [f"t* {dynamics_lib.DEFINITION_LABELS[d]}" for d in dynamics_lib.DEFINITIONS]
    ax.legend(handles, labels, loc="center left", ncol=2 if len(labels) > 16 else 1, handlelength=3.0,
              frameon=False)


def final_record(metrics_by_run: Mapping[str, Sequence[dict]], name: str) -> dict | None:
    records = metrics_by_run.get(name, [])
    return max(records, key=lambda r: r["step"]) if records else None


def default_per_position_num_tasks(rows: Sequence[dict], max_values: int = 4) -> list[int]:
    """Up to `max_values` M values spread over the sweep: smallest, middle and largest finite M, and ∞."""
    all_m = _sorted_num_tasks(r["num_tasks"] for r in rows)
    finite = [m for m in all_m if m > 0]
    picks = [finite[round(i * (len(finite) - 1) / max(1, max_values - 2))] for i in range(max_values - 1)] \
        if finite else []
    picks = _sorted_num_tasks(picks + [m for m in all_m if m <= 0])
    return picks[-max_values:] if len(picks) > max_values else picks


def parse_budget(text: str | Sequence, rows: Sequence[dict]) -> tuple[int, int]:
    """'64,2500' or 'B=64,N=2500' (or a (batch, steps) pair) → (64, 2500), checked against the sweep's budgets."""
    available = _budgets_of(rows)
    try:
        if isinstance(text, str):
            parts = [p.split("=")[-1] for p in text.replace("_", ",").split(",")]
            budget = tuple(int(p.replace(",", "")) for p in parts)
        else:
            budget = tuple(int(v) for v in text)
        if len(budget) != 2:
            raise ValueError
    except ValueError:
        raise ValueError(f"budget={text!r}; allowed: 'batch,steps', one of "
                         f"{[f'{b},{n}' for b, n in available]}") from None
    if budget not in available:
        raise ValueError(f"budget {budget_label(*budget)} is not in the sweep; available: "
                         f"{[f'{b},{n}' for b, n in available]}")
    return budget


def per_position_figure(metrics_by_run: Mapping[str, Sequence[dict]], rows: Sequence[dict],
                        num_tasks_values: Sequence, eval_set: str | None = None, budget=None,
                        title: str | None = None):
    """L/D against context position k at the final evaluation, one panel per M (columns) and evaluation set (rows;
    both unless `eval_set`): the transformer at every budget (or only `budget`), each in its line style, and the
    estimators, averaged over finished seeds."""
    eval_sets = names.EVAL_SETS if eval_set is None else (eval_set,)
    for es in eval_sets:
        if es not in names.EVAL_SETS:
            raise ValueError(f"eval_set={es!r}; allowed: {', '.join(names.EVAL_SETS)}")
    all_budgets = _budgets_of(rows)
    shown = [parse_budget(budget, rows)] if budget is not None else all_budgets
    num_tasks_values = [parse_num_tasks(m) for m in num_tasks_values]
    for b in shown:
        available = _sorted_num_tasks(r["num_tasks"] for r in rows if (r["batch_size"], r["steps"]) == b)
        missing = [m for m in num_tasks_values if m not in available]
        if missing:
            raise ValueError(f"M = {[num_tasks_label(m) for m in missing]} not in the sweep at "
                             f"{budget_label(*b)}; available: {[num_tasks_label(m) for m in available]}")
    drawn = {r["name"] for b in shown for m in num_tasks_values for r in rows
             if (r["batch_size"], r["steps"]) == b and r["num_tasks"] == m}
    lengths = context_lengths({name: metrics_by_run.get(name, []) for name in drawn})
    if len(lengths) > 1:
        raise ValueError(f"these runs have context lengths K = {sorted(lengths)}: per-position curves of different K "
                         "do not share an axis; draw one setting at a time")
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(len(eval_sets), len(num_tasks_values), squeeze=False, sharey="row",
                                 figsize=(2.6 * len(num_tasks_values) + 0.6, 2.4 * len(eval_sets) + 1.0))
        for col, m in enumerate(num_tasks_values):
            finals = {b: [f for f in (final_record(metrics_by_run, n) for n in _done_runs(rows, b, m)) if f]
                      for b in shown}
            for row_i, es in enumerate(eval_sets):
                ax = axes[row_i, col]
                for predictor in (names.PT, names.DMMSE, names.RIDGE):  # ridge on top where dMMSE = ridge
                    key = names.loss_key(es, predictor)
                    estimator = predictor in ESTIMATORS
                    for b in shown[:1] if estimator else shown:
                        records = [f for f in finals[b] if key in f["per_position"]]
                        if not records:
                            continue
                        curve = np.mean([f["per_position"][key] for f in records], axis=0)
                        label = names.LABELS[predictor] + (" (estimator)" if estimator else f", {budget_label(*b)}")
                        ax.plot(np.arange(1, len(curve) + 1), curve, "-" if estimator else
                                budget_style(b, all_budgets), color=COLORS[predictor], label=label, **_line(predictor))
                ax.set_title(f"M={num_tasks_label(m)}, {names.LABELS[es]}")
                ax.set_xlabel("context position k")
                if col == 0:
                    ax.set_ylabel(f"L/D on {names.LABELS[es]}")
        handles = [plt.Line2D([], [], color=COLORS[names.PT], ls=budget_style(b, all_budgets), **TRAINED_LINE)
                   for b in shown]
        labels = [f"{names.LABELS[names.PT]}, {budget_label(*b)}" for b in shown]
        for predictor in (names.RIDGE, names.DMMSE):
            handles.append(plt.Line2D([], [], color=COLORS[predictor], **_line(predictor)))
            labels.append(f"{names.LABELS[predictor]} (estimator)")
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), **LEGEND)
        seeds = len({r["seed"] for r in rows if (r["batch_size"], r["steps"]) in shown})
        fig.suptitle(title or "error against context position at the final evaluation, mean over "
                     f"{seeds} seed{'s' if seeds != 1 else ''}")
        fig.tight_layout(rect=(0, 0.07 if len(eval_sets) > 1 else 0.14, 1, 1))
    return fig


def load_sweep(workdir: Path, setting: str | None = None) -> tuple[dict, dict[str, list[dict]]]:
    """(sweep summary, {run name: metrics records}) of a results folder; StoreError naming the path if unusable.
    When the runs changed since the summary was written, the sweep is re-summarised first, with a line saying so
    (`results.current_summary`): no figure or notebook shows a stale summary.

    `setting`: one setting of a sweep whose runs differ in more than M, budget and seed (`results.setting_summary`);
    a sweep of one setting refuses it."""
    workdir = results_folder(workdir)
    summary = results.current_summary(workdir)
    if not summary.get("cells"):
        raise StoreError(f"{workdir / names.SWEEP_SUMMARY_FILE} lists no finished runs: nothing to plot")
    if setting is not None:
        summary = results.setting_summary(summary, setting)
    return summary, results.run_metrics(workdir)


def figures_dir(workdir: Path, out: Path | None = None) -> Path:
    """Where a sweep's figures go: `out`, or `<workdir>/figures`."""
    return Path(out) if out else Path(workdir) / "figures"


def _with_setting(fig, summary: Mapping):
    """Names the setting of a multi-setting sweep at the head of the figure's title."""
    if summary.get("setting") and fig.get_suptitle():
        fig.suptitle(f"{summary['setting']}: {fig.get_suptitle()}")
    return fig


def _draw_sweep(summary, metrics_by_run):
    return sweep_figure(summary)  # sweep_title names the setting


def sweep_dynamics(summary: Mapping, metrics_by_run: Mapping[str, Sequence[dict]]) -> dict:
    """A sweep summary's dynamics block, recomputed (with the default fit set) when it predates t* three ways."""
    dyn = summary.get("dynamics", {})
    return dyn if "definitions" in dyn else dynamics_lib.summarize_dynamics(metrics_by_run, summary["cells"])


def _draw_dynamics(summary, metrics_by_run):
    return _with_setting(dynamics_figure(metrics_by_run, summary["cells"], sweep_dynamics(summary, metrics_by_run)),
                         summary)


def sweep_per_position_figure(summary: Mapping, metrics_by_run: Mapping[str, Sequence[dict]],
                              num_tasks_values: Sequence | None = None, eval_set: str | None = None, budget=None):
    """The per-position figure of a sweep summary (of one setting): by default up to four M that every shown
    budget has (budgets' grids may differ)."""
    rows = summary["cells"]
    # Default M values from the M that every shown budget has (grids may differ between budgets).
    shown = [parse_budget(budget, rows)] if budget is not None else _budgets_of(rows)
    common = set.intersection(*({r["num_tasks"] for r in rows if (r["batch_size"], r["steps"]) == b} for b in shown))
    values = num_tasks_values or default_per_position_num_tasks([r for r in rows if r["num_tasks"] in common])
    return _with_setting(per_position_figure(metrics_by_run, rows, values, eval_set, budget), summary)


FIGURE_DRAWERS = {"sweep": _draw_sweep, "dynamics": _draw_dynamics, "per_position": sweep_per_position_figure}


def write_figure(name: str, workdir: Path, out: Path | None = None, loaded: tuple | None = None,
                 setting: str | None = None, **options) -> list[Path]:
    """Draws figure `name` of a sweep folder into `out` (default `<workdir>/figures`) as PNG and PDF.

    `loaded`: the folder's `load_sweep` result when the caller already has it (no second read of the runs).
    `setting`: which setting of a multi-setting sweep (its files are `<name>_<setting>`); such a sweep is never
    drawn pooled, so without one it is refused with the settings there are.
    """
    summary, metrics_by_run = loaded or load_sweep(workdir)
    if setting is not None and summary.get("setting") != setting:
        summary = results.setting_summary(summary, setting)
    if results.settings_of(summary):
        raise StoreError(f"{workdir}: its runs differ in {', '.join(summary['setting_fields'])}; figures are drawn "
                         "per setting (--setting), one of " + ", ".join(repr(s) for s in results.settings_of(summary)))
    stem = f"{name}_{results.setting_slug(setting)}" if setting is not None else name
    return save(FIGURE_DRAWERS[name](summary, metrics_by_run, **options), figures_dir(workdir, out) / stem)


def write_sweep_figure(workdir: Path, out: Path | None = None, setting: str | None = None) -> list[Path]:
    return write_figure("sweep", workdir, out, setting=setting)


def write_dynamics_figure(workdir: Path, out: Path | None = None, loaded: tuple | None = None,
                          setting: str | None = None) -> list[Path]:
    return write_figure("dynamics", workdir, out, loaded, setting=setting)


def write_per_position_figure(workdir: Path, out: Path | None = None, num_tasks_values: Sequence | None = None,
                              eval_set: str | None = None, budget=None, setting: str | None = None) -> list[Path]:
    """`budget`: 'batch,steps' (or a pair) to show one budget; None: every budget, each in its line style."""
    return write_figure("per_position", workdir, out, setting=setting, num_tasks_values=num_tasks_values,
                        eval_set=eval_set, budget=budget)


FIGURE_WRITERS = {"sweep": write_sweep_figure, "dynamics": write_dynamics_figure,
                  "per_position": write_per_position_figure}


def write_all_figures(workdir: Path, out: Path | None = None) -> list[Path]:
    """Every figure of a sweep folder, as PNG and PDF, into `out` (default `<workdir>/figures`); the folder is read
    once (and fails before anything is written). A sweep over the context length K (e.g. over D with K ∝ D) has no
    common per-position axis: its per-position figure is left out, with a warning. A sweep of several settings
    gets one sweep figure per setting (`sweep_<setting>`); its dynamics and per-position figures are drawn per
    setting on request (`write_figure(..., setting=…)`, the figure scripts' --setting), with a warning saying so."""
    loaded = load_sweep(workdir)
    settings = results.settings_of(loaded[0])
    if settings:
        warnings.warn(f"{workdir}: runs of {len(settings)} settings: one sweep figure per setting; the dynamics and "
                      "per-position figures per setting with experiments/figures/dynamics.py or per_position.py "
                      f"--setting='{settings[0]}'")
        return [path for label in settings for path in write_figure("sweep", workdir, out, loaded, label)]
    drawn = list(FIGURE_DRAWERS)
    lengths = context_lengths(loaded[1])
    if len(lengths) > 1:
        warnings.warn(f"{workdir}: no per-position figure: its runs have context lengths K = {sorted(lengths)}")
        drawn.remove("per_position")
    return [path for name in drawn for path in write_figure(name, workdir, out, loaded)]


def context_lengths(metrics_by_run: Mapping[str, Sequence[dict]]) -> set[int]:
    """The context lengths K of a sweep's runs, read from their final per-position curves."""
    out = set()
    for records in metrics_by_run.values():
        final = max(records, key=lambda r: r["step"]) if records else None
        out |= {len(curve) for curve in (final or {}).get("per_position", {}).values()}
    return out
