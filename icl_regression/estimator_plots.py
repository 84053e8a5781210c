"""Figures of the estimator analyses — interpolated tasks (Fig 5), smoothed dMMSE (Fig 12), the Laplace comparison
(Fig 14) — drawn only from their stored JSON in `<workdir>/analysis/`: matplotlib, no jax.

The style is `plotting`'s: one colour per predictor, one line style per data budget, log2 M axes with M = ∞ at
the right end.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from icl_regression import names, plotting
from icl_regression.config import num_tasks_label
from icl_regression.plotting import plt
from icl_regression.store import StoreError, analysis_folder, read_json

COLORS = {**plotting.COLORS, names.SMOOTHED_DMMSE: "#e08e0b", names.LAPLACE_MMSE: "#7b3294",
          "pt_laplace_mmse": "#7b3294", "laplace_mmse_ridge": "#7f7f7f"}
SCRIPTS = {names.INTERPOLATION_FILE: "experiments/interpolation.py", names.SMOOTHING_FILE: "experiments/smoothing.py",
           names.LAPLACE_FILE: "experiments/laplace_comparison.py"}


def load_analysis(workdir: Path, filename: str) -> dict:
    """A stored analysis of a sweep folder; StoreError naming the folder and the command that makes it."""
    path = analysis_folder(workdir) / filename
    if not path.exists():
        raise StoreError(f"no {names.ANALYSIS_DIR}/{filename} in {workdir}: run "
                         f"python {SCRIPTS[filename]} --workdir={workdir} first")
    return read_json(path)


def params_note(rows: Sequence[Mapping]) -> str:
    """'' when every model is the stored one; else how far the retrained models' metrics deviate from it."""
    deviations = [r.get("retrained_final_max_relative_deviation", 0.0) for r in rows]
    if not any(deviations):
        return ""
    return (f"\nmodels retrained with the same config on another machine; their final metrics deviate from the "
            f"stored runs' by up to {100 * max(deviations):.1f}%")


def seeds_note(rows: Sequence[Mapping]) -> str:
    """What the model's values in a figure are over seeds: one seed's point values, or the mean over n seeds."""
    seeds = sorted({r["seed"] for r in rows})
    if len(seeds) < 2:
        return f"; 1 seed (seed {seeds[0]}): the model's values are point values, no interval over seeds" if seeds \
            else ""
    return f"; the model's values: mean over {len(seeds)} seeds"


def _budget(row: Mapping) -> tuple[int, int]:
    return row["batch_size"], row["steps"]


def _seed_mean(rows: Sequence[Mapping], value) -> dict:
    """{(budget, M): mean over seeds of value(row)} (value returns a float or an array)."""
    grouped = defaultdict(list)
    for row in rows:
        grouped[_budget(row), row["num_tasks"]].append(np.asarray(value(row), float))
    return {key: np.mean(values, axis=0) for key, values in grouped.items()}


def _m_axis(ax, num_tasks_values) -> tuple[float, callable]:
    finite = sorted({math.log2(m) for m in num_tasks_values if m > 0})
    inf_x = plotting._infinite_x(finite)
    plotting._log2_axis(ax, finite, inf_x, any(m <= 0 for m in num_tasks_values))
    return inf_x, lambda m: plotting._x_of(m, inf_x)


def _sorted_m(values) -> list[int]:
    return sorted(set(values), key=lambda m: m if m > 0 else math.inf)


# --- Interpolated tasks (Fig 5). ---


def interpolation_figure(result: Mapping, budget: tuple[int, int] | None = None, title: str | None = None):
    """L/D of the model, dMMSE and ridge against α along paths between two pool-task directions, one panel per M
    (seeds averaged), at `budget` (default: the largest). The band is ± one standard error of the plotted mean:
    over pairs and sequences (evaluation noise) with one seed; with several, the spread between the seeds' curves
    (their pools differ) as well."""
    rows = result["runs"]
    budget = tuple(budget) if budget else plotting._budgets_of(rows)[-1]
    rows = [r for r in rows if _budget(r) == budget]
    all_m = _sorted_m(r["num_tasks"] for r in rows)
    with plt.rc_context(plotting.STYLE):
        fig, axes = plt.subplots(1, len(all_m), figsize=(2.5 * len(all_m) + 0.6, 2.8), squeeze=False, sharey=True)
        for ax, m in zip(axes[0], all_m):
            group = [r for r in rows if r["num_tasks"] == m]
            alphas = np.asarray(group[0]["alphas"])
            for predictor in (names.PT, names.DMMSE, names.RIDGE):
                curves = np.array([r["loss"][predictor]["mean"] for r in group])
                mean = curves.mean(axis=0)
                se_eval = np.sqrt(np.mean([np.square(r["loss"][predictor]["se"]) for r in group], axis=0) / len(group))
                se = (np.sqrt(curves.var(axis=0, ddof=1) / len(group) + se_eval**2) if len(group) > 1 else se_eval)
                ax.plot(alphas, mean, "-", marker="o", ms=2, color=COLORS[predictor],
                        label=names.LABELS[predictor])
                ax.fill_between(alphas, mean - se, mean + se, color=COLORS[predictor], alpha=0.2, lw=0)
            ax.set_title(f"M = {num_tasks_label(m)}" + (f" ({len(group)} seeds)" if len(group) > 1 else ""))
            ax.set_xlabel(r"$\alpha$ (0, 1: pool-task directions)")
            ax.set_yscale("log")
        axes[0, 0].set_ylabel(r"L/D on tasks $w_\alpha$")
        axes[0, 0].legend(loc="best")
        opts = result["options"]
        seeds = len({r["seed"] for r in rows})
        band = ("band: ± 1 se over pairs, evaluation noise only (1 seed)" if seeds < 2
                else f"band: ± 1 se over {seeds} seeds and pairs")
        fig.suptitle(title or f"interpolated tasks between pool-task directions (norm: the pair's mean), "
                              f"{plotting.budget_label(*budget)} ({opts['num_pairs']} pairs × "
                              f"{opts['sequences_per_pair']} sequences per α; {band})" + params_note(rows))
        fig.tight_layout()
    return fig


# --- Smoothed dMMSE (Fig 12). ---


def smoothing_figure(result: Mapping, title: str | None = None):
    """Top: L/D against M on T_pretrain and T_true for the model (per budget), dMMSE, ridge and smoothed dMMSE
    at s*. Bottom: s* against M, and L/D on the search T_true set against s for each M (s* marked)."""
    pools, runs = result["pools"], result["runs"]
    all_m = _sorted_m(p["num_tasks"] for p in pools)
    budgets = plotting._budgets_of(runs)
    pool_mean = lambda fn: {m: float(np.mean([fn(p) for p in pools if p["num_tasks"] == m])) for m in all_m}
    with plt.rc_context(plotting.STYLE):
        fig, axes = plt.subplots(2, 2, figsize=(9, 6.4))
        for ax, eval_set in zip(axes[0], names.EVAL_SETS):
            _, x_of = _m_axis(ax, all_m)
            xs = [x_of(m) for m in all_m]
            for predictor in (names.DMMSE, names.RIDGE, names.SMOOTHED_DMMSE):
                ys = pool_mean(lambda p: p[eval_set][predictor]["mean"])
                label = names.LABELS[predictor] + (" at s*" if predictor == names.SMOOTHED_DMMSE else "")
                ax.plot(xs, [ys[m] for m in all_m], "-", marker="o", ms=3, color=COLORS[predictor], label=label)
            pt = _seed_mean(runs, lambda r: r[names.PT][eval_set]["mean"])
            for i, budget in enumerate(budgets):
                ms = [m for m in all_m if (budget, m) in pt]
                ax.plot([x_of(m) for m in ms], [pt[budget, m] for m in ms],
                        plotting.BUDGET_STYLES[i % len(plotting.BUDGET_STYLES)], marker="s", ms=3,
                        color=COLORS[names.PT], label=f"{names.LABELS[names.PT]}, {plotting.budget_label(*budget)}")
            ax.set_yscale("log")
            ax.set_ylabel(f"L/D on {names.LABELS[eval_set]}")
        axes[0, 0].legend(loc="best")
        ax = axes[1, 0]
        _, x_of = _m_axis(ax, all_m)
        scale = result.get("task_scale", 1.0)
        for p in pools:
            ax.plot(x_of(p["num_tasks"]), max(p["best_smoothing_std"] / scale, 1e-3), "o",
                    color=COLORS[names.SMOOTHED_DMMSE])
        ax.set_yscale("log")
        ax.set_ylabel(r"best smoothing $s^*/\tau$ (chosen on $T_{true}$)")
        _search_curves(axes[1, 1], pools, scale)
        fig.suptitle(title or "the transformer against smoothed dMMSE (pool tasks blurred to N(w(i), s²I)), s* best "
                              "on a held-out T_true set" + seeds_note(runs))
        fig.tight_layout()
    return fig


def _search_curves(ax, pools: Sequence[Mapping], scale: float) -> None:
    colors = plotting.num_tasks_colors([p["num_tasks"] for p in pools])
    seen = set()
    for p in pools:
        curve = p["search_curve"]
        s = np.asarray(curve["smoothing_std"]) / scale
        positive = s > 0
        label = None if p["num_tasks"] in seen else f"M={num_tasks_label(p['num_tasks'])}"
        seen.add(p["num_tasks"])
        ax.plot(s[positive], np.asarray(curve["loss_true_search"])[positive], "-", color=colors[p["num_tasks"]],
                lw=1, label=label)
        best = p["best_smoothing_std"] / scale
        if best > 0:
            ax.plot([best], [min(curve["loss_true_search"])], "o", ms=4, color=colors[p["num_tasks"]])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"smoothing $s/\tau$")
    ax.set_ylabel(r"smoothed dMMSE L/D on the $T_{true}$ search set")
    ax.legend(loc="best", ncol=2)


# --- The Laplace comparison (Fig 14). ---


def laplace_figure(result: Mapping, title: str | None = None):
    """L/D against M on T_pretrain and T_true for the model (per budget), ridge, dMMSE and the Laplace posterior
    mean; and Δ_{PT,Ridge}, Δ_{PT,Laplace} on T_true (per budget), with Δ_{Laplace,Ridge} for scale."""
    runs = result["runs"]
    all_m = _sorted_m(r["num_tasks"] for r in runs)
    budgets = plotting._budgets_of(runs)
    with plt.rc_context(plotting.STYLE):
        fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
        for ax, eval_set in zip(axes[:2], names.EVAL_SETS):
            _, x_of = _m_axis(ax, all_m)
            for predictor in (names.DMMSE, names.RIDGE, names.LAPLACE_MMSE, names.PT):
                values = _seed_mean([r for r in runs if predictor != names.DMMSE or r["num_tasks"] > 0],
                                    lambda r: r[eval_set]["loss"][predictor]["mean"])  # no pool at M = ∞
                for i, budget in enumerate(budgets if predictor == names.PT else budgets[:1]):
                    ms = [m for m in all_m if (budget, m) in values]
                    label = names.LABELS[predictor] + (f", {plotting.budget_label(*budget)}"
                                                       if predictor == names.PT else "")
                    ax.plot([x_of(m) for m in ms], [values[budget, m] for m in ms],
                            plotting.BUDGET_STYLES[i % len(plotting.BUDGET_STYLES)], marker="o", ms=3,
                            color=COLORS[predictor], label=label)
            ax.set_yscale("log")
            ax.set_ylabel(f"L/D on {names.LABELS[eval_set]} (Laplace tasks)")
        axes[0].legend(loc="best")
        ax = axes[2]
        _, x_of = _m_axis(ax, all_m)
        for pair in ("pt_ridge", "pt_laplace_mmse", "laplace_mmse_ridge"):
            values = _seed_mean(runs, lambda r: r[names.TRUE]["delta"][pair]["mean"])
            for i, budget in enumerate(budgets if pair.startswith("pt_") else budgets[:1]):
                ms = [m for m in all_m if (budget, m) in values]
                label = names.LABELS[pair] + (f", {plotting.budget_label(*budget)}" if pair.startswith("pt_") else "")
                ax.plot([x_of(m) for m in ms], [values[budget, m] for m in ms],
                        plotting.BUDGET_STYLES[i % len(plotting.BUDGET_STYLES)], marker="o", ms=3,
                        color=COLORS[pair], label=label)
        ax.set_yscale("log")
        ax.set_ylabel(f"Δ on {names.LABELS[names.TRUE]}")
        ax.legend(loc="best")
        sampler = result["sampler"]
        fig.suptitle(title or "trained on Laplace tasks: the transformer against the Laplace posterior mean "
                              f"(Gibbs, {sampler['num_samples']:,} sweeps), ridge and dMMSE" + seeds_note(runs)
                              + params_note(runs))
        fig.tight_layout()
    return fig


ANALYSIS_FIGURES = {  # figure name: (analysis file, drawer)
    "interpolation": (names.INTERPOLATION_FILE, interpolation_figure),
    "smoothing": (names.SMOOTHING_FILE, smoothing_figure),
    "laplace_comparison": (names.LAPLACE_FILE, laplace_figure),
}


def write_analysis_figure(name: str, workdir: Path, out: Path | None = None) -> list[Path]:
    """Draws analysis figure `name` of a sweep folder from its stored JSON into `out` (default
    `<workdir>/figures`) as PNG and PDF."""
    filename, draw = ANALYSIS_FIGURES[name]
    result = load_analysis(workdir, filename)
    return plotting.save(draw(result), plotting.figures_dir(workdir, out) / name)
