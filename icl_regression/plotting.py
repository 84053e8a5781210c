"""Figures drawn from stored results only (sweep summaries and metrics records): matplotlib, no jax.

One style for every figure: one colour per predictor (or per pair of predictors), one line style per data budget,
log2 M axes with M = ∞ drawn at the right end, the threshold as a vertical line with its interval shaded.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

from icl_regression import dynamics as dynamics_lib  # noqa: E402
from icl_regression import names, results  # noqa: E402
from icl_regression.config import num_tasks_label, parse_num_tasks  # noqa: E402
from icl_regression.store import StoreError  # noqa: E402

COLORS = {names.PT: "#1f4e9c", names.RIDGE: "#d1495b", names.DMMSE: "#2e933c",
          "pt_ridge": "#d1495b", "pt_dmmse": "#2e933c", "dmmse_ridge": "#7f7f7f"}
BUDGET_STYLES = ("-", "--", ":", "-.")
STYLE = {"figure.dpi": 120, "font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "legend.fontsize": 7,
         "axes.spines.top": False, "axes.spines.right": False}


def save(fig, stem: Path) -> list[Path]:
    """Writes `<stem>.png` and `<stem>.pdf` and closes the figure. No creation date in the PDF: the same results
    give the same bytes, so regenerating committed figures changes only what changed."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    for path in paths:
        fig.savefig(path, bbox_inches="tight", metadata={"CreationDate": None} if path.suffix == ".pdf" else None)
    plt.close(fig)
    return paths


def budget_label(batch_size: int, steps: int) -> str:
    return f"B={batch_size}, N={steps:,}"


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


def _mark_threshold(ax, summary: Mapping) -> None:
    x = summary.get("threshold_log2_num_tasks", math.nan)
    if x is None or not math.isfinite(x):
        return
    lo, hi = summary["threshold_interval"]
    if math.isfinite(lo) and math.isfinite(hi):
        ax.axvspan(lo, hi, color="0.85", zorder=0, lw=0)
    ax.axvline(x, color="0.3", lw=1, ls="--", zorder=1)


def cell_curves(rows: Sequence[dict], key: str) -> dict:
    """{(batch, steps): (num_tasks array, mean array, std array)} over seeds, M ascending with ∞ last."""
    grouped = defaultdict(list)
    for row in rows:
        if row["status"] == names.DONE:
            grouped[(row["batch_size"], row["steps"]), row["num_tasks"]].append(row["final"][key])
    curves = defaultdict(list)
    for (budget, num_tasks), values in grouped.items():
        curves[budget].append((num_tasks, float(np.mean(values)), float(np.std(values))))
    out = {}
    for budget, points in curves.items():
        points.sort(key=lambda p: p[0] if p[0] > 0 else math.inf)
        out[budget] = tuple(np.array(column) for column in zip(*points))
    return out


def sweep_figure(summary: Mapping, title: str | None = None):
    """L/D, Δ_{PT,dMMSE} and Δ_{PT,Ridge} against M on T_pretrain (top) and T_true (bottom), per budget."""
    rows = summary["cells"]
    finite = sorted({math.log2(r["num_tasks"]) for r in rows if r["num_tasks"] > 0})
    has_inf = any(r["num_tasks"] <= 0 for r in rows)
    inf_x = _infinite_x(finite)
    budgets = sorted({(r["batch_size"], r["steps"]) for r in rows}, key=lambda b: (b[0] * b[1], b))
    panels = [("loss", "L/D", list(names.PREDICTORS)), ("pt_dmmse", r"$\Delta_{PT,dMMSE}$", ["pt_dmmse"]),
              ("pt_ridge", r"$\Delta_{PT,Ridge}$", ["pt_ridge"])]
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(2, 3, figsize=(10, 5.6))
        for row_i, eval_set in enumerate(names.EVAL_SETS):
            for col, (kind, ylabel, series) in enumerate(panels):
                ax = axes[row_i, col]
                for name in series:
                    key = names.loss_key(eval_set, name) if kind == "loss" else names.delta_key(eval_set, name)
                    estimator = name in (names.RIDGE, names.DMMSE, "dmmse_ridge")  # the same for every budget
                    for budget_i, budget in enumerate(budgets[:1] if estimator else budgets):
                        curve = cell_curves(rows, key).get(budget)
                        if curve is None:
                            continue
                        num_tasks, mean, std = curve
                        xs = np.array([_x_of(m, inf_x) for m in num_tasks])
                        label = names.LABELS[name] if estimator else f"{names.LABELS[name]}, {budget_label(*budget)}"
                        ax.plot(xs, mean, BUDGET_STYLES[budget_i % len(BUDGET_STYLES)], marker="o", ms=3,
                                color=COLORS[name], label=label)
                        if np.any(std > 0):
                            ax.fill_between(xs, mean - std, mean + std, color=COLORS[name], alpha=0.15, lw=0)
                ax.set_yscale("log")
                ax.set_ylabel(f"{ylabel} on {names.LABELS[eval_set]}")
                if eval_set == names.TRUE:
                    _mark_threshold(ax, summary)
                _log2_axis(ax, finite, inf_x, has_inf)
        axes[0, 0].legend(loc="best")
        axes[1, 2].legend(loc="best")
        fig.suptitle(title or _threshold_title(summary))
        fig.tight_layout()
    return fig


def _threshold_title(summary: Mapping) -> str:
    x = summary.get("threshold_log2_num_tasks", math.nan)
    if x is None or not math.isfinite(x):
        return "task-diversity sweep (threshold not located in this range of M)"
    lo, hi = summary["threshold_interval"]
    return (f"task-diversity sweep: threshold ({summary['method']}) log2 M* = {x:.2f} "
            f"[{lo:.2f}, {hi:.2f}], dashed line and shaded interval")


# --- Training dynamics, per-position curves, and every figure written from a results folder. ---


INFINITE_COLOR = "black"  # M = ∞ against a colour map over log2 M
NUM_TASKS_CMAP = "viridis"
BUDGET_MARKERS = ("o", "s", "^", "D")
PER_POSITION_STYLES = {names.PT: "-", names.RIDGE: "-", names.DMMSE: "--"}  # dMMSE = ridge at M = ∞


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


def _t_star_of(point: Mapping) -> float:
    return point["t_star_transient"] if point["kind"] == dynamics_lib.TRANSIENT else point["t_star_median"]


def dynamics_figure(metrics_by_run: Mapping[str, Sequence[dict]], rows: Sequence[dict], dynamics: Mapping,
                    title: str | None = None):
    """Δ^{T_true}_{PT,Ridge} against step, one line per M and one panel per budget, t* marked (filled: transient,
    open: monotone); last panel: t* against M on log-log axes with the fitted power law t* ∝ M^α per budget."""
    dyn = _inner(dynamics)
    budgets = _budgets_of(rows)
    all_m = _sorted_num_tasks(r["num_tasks"] for r in rows)
    colors = num_tasks_colors(all_m)
    points = {(p["batch_size"], p["steps"], p["num_tasks"]): p for p in dyn["per_num_tasks"]}
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, len(budgets) + 1, figsize=(3.4 * (len(budgets) + 1), 3.2), squeeze=False)
        axes = axes[0]
        for ax, budget in zip(axes, budgets):
            for m in all_m:
                steps, values = seed_mean_curve(metrics_by_run, _done_runs(rows, budget, m), names.THRESHOLD_METRIC)
                if not len(steps):
                    continue
                ax.plot(steps, values, color=colors[m], lw=1.2, label=f"M={num_tasks_label(m)}")
                point = points.get((*budget, m))
                t_star = _t_star_of(point) if point else math.nan
                if math.isfinite(t_star):
                    y = values[int(np.argmin(np.abs(steps - t_star)))]
                    filled = point["kind"] == dynamics_lib.TRANSIENT
                    ax.plot([t_star], [y], "o", ms=5, color=colors[m], mfc=colors[m] if filled else "white",
                            zorder=3)
            ax.set_yscale("log")
            ax.set_xlabel("training step")
            ax.set_ylabel(f"{names.LABELS['pt_ridge']} on {names.LABELS[names.TRUE]}")
            ax.set_title(budget_label(*budget))
        handles, labels = axes[0].get_legend_handles_labels()
        handles += [plt.Line2D([], [], ls="", marker="o", color="0.3"),
                    plt.Line2D([], [], ls="", marker="o", color="0.3", mfc="white")]
        labels += ["t*, transient", "t*, monotone (no turn away from ridge)"]
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 7), frameon=False)
        _t_star_panel(axes[-1], dyn, budgets)
        fig.suptitle(title or "training dynamics: closest approach to ridge t* and its growth with M")
        fig.tight_layout(rect=(0, 0.1 if len(labels) <= 7 else 0.16, 1, 1))
    return fig


def _t_star_panel(ax, dyn: Mapping, budgets) -> None:
    """t* against M per budget: filled markers for transient M (the power law is fitted to these), open markers
    for monotone M (the closest approach so far: a lower bound on a later turn), and the fitted line."""
    plotted_m, max_t = set(), 0.0
    for i, budget in enumerate(budgets):
        pts = [p for p in dyn["per_num_tasks"] if (p["batch_size"], p["steps"]) == budget and p["num_tasks"] > 0
               and math.isfinite(_t_star_of(p))]
        if not pts:
            continue
        color, marker = f"C{i}", BUDGET_MARKERS[i % len(BUDGET_MARKERS)]
        transient = [p for p in pts if p["kind"] == dynamics_lib.TRANSIENT]
        monotone = [p for p in pts if p["kind"] != dynamics_lib.TRANSIENT]
        if transient:
            ax.plot([p["num_tasks"] for p in transient], [_t_star_of(p) for p in transient], marker, color=color,
                    ms=5, label=f"t*, transient, {budget_label(*budget)}")
        if monotone:
            ax.plot([p["num_tasks"] for p in monotone], [_t_star_of(p) for p in monotone], marker, color=color,
                    mfc="white", ms=5, label=f"t*, monotone, {budget_label(*budget)}")
        fit = dyn["power_law_by_budget"].get(f"B={budget[0]}_N={budget[1]}", {})
        if transient and math.isfinite(fit.get("alpha", math.nan)):
            m = np.array([p["num_tasks"] for p in transient], float)
            lo, hi = fit["alpha_interval"]
            interval = f" [{lo:.2f}, {hi:.2f}]" if math.isfinite(lo) else " (no interval)"
            grid = np.geomspace(m.min(), m.max(), 50)
            ax.plot(grid, fit["prefactor"] * grid ** fit["alpha"], BUDGET_STYLES[i % len(BUDGET_STYLES)],
                    color=color, lw=1, label=f"fit: α = {fit['alpha']:.2f}{interval}")
        plotted_m.update(p["num_tasks"] for p in pts)
        max_t = max([max_t] + [_t_star_of(p) for p in pts])
    if plotted_m:
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ticks = sorted(plotted_m)[:: max(1, len(plotted_m) // 8)]  # at most about 8 labelled M values
        ax.set_xticks(ticks, [str(m) for m in ticks])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_ylim(top=4 * max_t)  # room above the points for the legend
        ax.legend(loc="upper left")
    else:
        ax.text(0.5, 0.5, "no finite M with a t*", ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_xlabel("number of pretraining tasks M")
    ax.set_ylabel("t* (step of closest approach)")
    ax.set_title("t* against M (fit: transient M only)")


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


def per_position_figure(metrics_by_run: Mapping[str, Sequence[dict]], rows: Sequence[dict],
                        num_tasks_values: Sequence, eval_set: str | None = None, budget=None,
                        title: str | None = None):
    """L/D against context position k for PT, ridge and dMMSE at the final evaluation, one panel per M
    (columns) and evaluation set (rows; both unless `eval_set`), averaged over seeds, at `budget`
    (default: the largest)."""
    eval_sets = names.EVAL_SETS if eval_set is None else (eval_set,)
    for es in eval_sets:
        if es not in names.EVAL_SETS:
            raise ValueError(f"eval_set={es!r}; allowed: {', '.join(names.EVAL_SETS)}")
    budget = tuple(budget) if budget is not None else _budgets_of(rows)[-1]
    num_tasks_values = [parse_num_tasks(m) for m in num_tasks_values]
    available = _sorted_num_tasks(r["num_tasks"] for r in rows if (r["batch_size"], r["steps"]) == budget)
    missing = [m for m in num_tasks_values if m not in available]
    if missing:
        raise ValueError(f"M = {[num_tasks_label(m) for m in missing]} not in the sweep at "
                         f"{budget_label(*budget)}; available: {[num_tasks_label(m) for m in available]}")
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(len(eval_sets), len(num_tasks_values), squeeze=False, sharey="row",
                                 figsize=(2.6 * len(num_tasks_values) + 0.6, 2.4 * len(eval_sets) + 0.4))
        for col, m in enumerate(num_tasks_values):
            finals = [final_record(metrics_by_run, name) for name in _done_runs(rows, budget, m)]
            finals = [f for f in finals if f is not None]
            for row_i, es in enumerate(eval_sets):
                ax = axes[row_i, col]
                for predictor in names.PREDICTORS:
                    key = names.loss_key(es, predictor)
                    if not finals or key not in finals[0]["per_position"]:
                        continue
                    curve = np.mean([f["per_position"][key] for f in finals], axis=0)
                    ax.plot(np.arange(1, len(curve) + 1), curve, PER_POSITION_STYLES[predictor], marker="o",
                            ms=2.5, color=COLORS[predictor], label=names.LABELS[predictor])
                step = finals[0]["step"] if finals else "—"
                ax.set_title(f"M={num_tasks_label(m)}, {names.LABELS[es]} (step {step})")
                ax.set_xlabel("context position k")
                if col == 0:
                    ax.set_ylabel(f"L/D on {names.LABELS[es]}")
        axes[0, 0].legend(loc="best")
        fig.suptitle(title or f"error against context position at the final evaluation, {budget_label(*budget)}")
        fig.tight_layout()
    return fig


def load_sweep(workdir: Path) -> tuple[dict, dict[str, list[dict]]]:
    """(sweep summary, {run name: metrics records}) of a results folder; StoreError naming the path if unusable."""
    workdir = Path(workdir)
    if not workdir.is_dir():
        raise StoreError(f"results folder {workdir} does not exist")
    summary = results.load_summary(workdir)
    if not summary.get("cells"):
        raise StoreError(f"{workdir / names.SWEEP_SUMMARY_FILE} lists no finished runs: nothing to plot")
    return summary, results.run_metrics(workdir)


def figures_dir(workdir: Path, out: Path | None = None) -> Path:
    """Where a sweep's figures go: `out`, or `<workdir>/figures`."""
    return Path(out) if out else Path(workdir) / "figures"


def _draw_sweep(summary, metrics_by_run):
    return sweep_figure(summary)


def _draw_dynamics(summary, metrics_by_run):
    dyn = dynamics_lib.summarize_dynamics(metrics_by_run, summary["cells"])
    return dynamics_figure(metrics_by_run, summary["cells"], dyn)


def _draw_per_position(summary, metrics_by_run, num_tasks_values: Sequence | None = None,
                       eval_set: str | None = None):
    rows = summary["cells"]
    largest = _budgets_of(rows)[-1]  # the figure's budget: default M values from its own grid (grids may differ)
    values = num_tasks_values or default_per_position_num_tasks(
        [r for r in rows if (r["batch_size"], r["steps"]) == largest])
    return per_position_figure(metrics_by_run, rows, values, eval_set)


FIGURE_DRAWERS = {"sweep": _draw_sweep, "dynamics": _draw_dynamics, "per_position": _draw_per_position}


def write_figure(name: str, workdir: Path, out: Path | None = None, loaded: tuple | None = None,
                 **options) -> list[Path]:
    """Draws figure `name` of a sweep folder into `out` (default `<workdir>/figures`) as PNG and PDF.

    `loaded`: the folder's `load_sweep` result when the caller already has it (no second read of the runs).
    """
    summary, metrics_by_run = loaded or load_sweep(workdir)
    return save(FIGURE_DRAWERS[name](summary, metrics_by_run, **options), figures_dir(workdir, out) / name)


def write_sweep_figure(workdir: Path, out: Path | None = None) -> list[Path]:
    return write_figure("sweep", workdir, out)


def write_dynamics_figure(workdir: Path, out: Path | None = None, loaded: tuple | None = None) -> list[Path]:
    return write_figure("dynamics", workdir, out, loaded)


def write_per_position_figure(workdir: Path, out: Path | None = None, num_tasks_values: Sequence | None = None,
                              eval_set: str | None = None) -> list[Path]:
    return write_figure("per_position", workdir, out, num_tasks_values=num_tasks_values, eval_set=eval_set)


FIGURE_WRITERS = {"sweep": write_sweep_figure, "dynamics": write_dynamics_figure,
                  "per_position": write_per_position_figure}


def write_all_figures(workdir: Path, out: Path | None = None) -> list[Path]:
    """Every figure of a sweep folder, as PNG and PDF, into `out` (default `<workdir>/figures`); the folder is read
    once (and fails before anything is written)."""
    loaded = load_sweep(workdir)
    return [path for name in FIGURE_DRAWERS for path in write_figure(name, workdir, out, loaded)]
