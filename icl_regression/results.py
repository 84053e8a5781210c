"""Reading a sweep's results: rows of finished cells, the sweep summary with its threshold, tables.

Numpy and JSON only (no jax), so notebooks and figure scripts can use it on any machine.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from icl_regression import dynamics, names, threshold
from icl_regression.config import dotted_fields, num_tasks_label, run_config_from_dict
from icl_regression.store import RunStore, StoreError, iter_runs, metrics_bytes, read_json, write_json

ROW_FIELDS = ("name", "status", "num_tasks", "num_tasks_label", "batch_size", "steps", "seed", "final", "bootstrap",
              "train_loss")
HEALTH_FIELDS = (names.DIVERGENCE, names.RUNAWAY)  # absent from summaries written before they existed


def summary_rows(run_dirs: Sequence[Path], damaged: dict | None = None) -> list[dict]:
    """One row per finished run: its sweep values, final metrics and bootstrap replicates, and whether (and where)
    it diverged or ran away. A finished run whose files are damaged (`RunStore.problems`) gives no row; its
    problems go into `damaged` ({name: [problem, …]}) when given."""
    rows = []
    for run_dir in run_dirs:
        run = RunStore(run_dir)
        summary = run.summary() if Path(run_dir).exists() else None
        if summary is None:
            continue
        problems = run.problems()
        if problems:
            if damaged is not None:
                damaged[run.name] = problems
            continue
        rows.append({**{k: summary[k] for k in ROW_FIELDS}, **{k: summary.get(k) for k in HEALTH_FIELDS}})
    return rows


def fingerprint(run_dirs: Sequence[Path]) -> str:
    """A hash of what a summary is made from: every run's summary.json and metrics.jsonl (content, not times, so
    a fresh clone of committed results matches)."""
    digest = hashlib.sha1()
    for run_dir in sorted(Path(d) for d in run_dirs):
        summary = run_dir / names.SUMMARY_FILE
        try:
            metrics = metrics_bytes(run_dir)  # compressed or not: the same content, the same fingerprint
        except StoreError:
            metrics = b"damaged"
        for name, content in ((names.SUMMARY_FILE, summary.read_bytes() if summary.exists() else None),
                              (names.METRICS_FILE, metrics)):
            digest.update(f"{run_dir.name}/{name}:".encode())
            digest.update(b"-" if content is None else content)
    return digest.hexdigest()[:16]


# What tells two runs of one cell apart; every other config field that varies between a sweep's runs is a setting,
# except those that say only how the run was executed (checkpoints, compiled-call length, evaluation chunks,
# ensemble strategy, kernel implementations).
CELL_FIELDS = ("data.num_tasks", "train.batch_size", "train.steps", "train.seed")
EXECUTION_FIELDS = ("checkpoint.interval", "checkpoint.keep", "train.steps_per_call", "train.ensemble_strategy",
                    "eval.batch_size", "eval.dmmse_block", "model.attention", "model.mlp", "model.layer_norm")
PER_SETTING = "per setting"  # the top-level threshold method of a sweep of several settings
SETTING_SYMBOLS = {"data.dim": "D", "data.context_len": "K", "data.noise_std": "noise_std", "model.d_model": "d",
                   "model.num_layers": "L", "model.num_heads": "heads", "train.weight_decay": "wd",
                   "train.learning_rate": "lr"}


def setting_fields(configs: Sequence[Mapping]) -> list[str]:
    """The config fields ("section.field") whose values differ between runs, besides a cell's M, batch, steps and
    seed and how they were executed (`EXECUTION_FIELDS`): a sweep over D, width, depth or weight decay has one
    setting per combination of them."""
    flat = [dotted_fields(c) for c in configs]
    fields = sorted({k for f in flat for k in f} - set(CELL_FIELDS) - set(EXECUTION_FIELDS))
    return [k for k in fields if len({repr(f.get(k)) for f in flat}) > 1]


def setting_label(config: Mapping, fields: Sequence[str]) -> str:
    """'D=4, K=16' for `fields` ["data.context_len", "data.dim"] (in SETTING_SYMBOLS order, then the others)."""
    flat = dotted_fields(config)
    order = sorted(fields, key=lambda k: (list(SETTING_SYMBOLS).index(k) if k in SETTING_SYMBOLS else len(
        SETTING_SYMBOLS), k))
    value = lambda v: f"{v:g}" if isinstance(v, float) else str(v)  # noqa: E731
    return ", ".join(f"{SETTING_SYMBOLS.get(k, k)}={value(flat.get(k))}" for k in order)


def setting_slug(label: str) -> str:
    """A file-name form of a setting label: 'd=32, L=4' → 'd=32_L=4'."""
    return "".join(c if c.isalnum() or c in "=.-" else "_" for c in label.replace(", ", "_"))


def _analyse(workdir: Path, rows: list[dict], metrics: Mapping, num_replicates: int | None) -> dict:
    """The threshold both ways and the training dynamics of rows of one setting."""
    summary = threshold.estimate_thresholds(rows, num_replicates)
    sweep_config = Path(workdir) / names.SWEEP_CONFIG_FILE
    analysis = dynamics.analysis_settings(read_json(sweep_config) if sweep_config.exists() else None)
    summary.update(dynamics.summarize_dynamics(metrics, rows, **analysis))
    return summary


def summarize(workdir: Path, run_dirs: Sequence[Path], num_replicates: int | None = None) -> dict:
    """Writes `sweep_summary.json` (`compute_summary`) and returns it."""
    summary = compute_summary(workdir, run_dirs, num_replicates)
    write_json(Path(workdir) / names.SWEEP_SUMMARY_FILE, summary)
    return summary


def compute_summary(workdir: Path, run_dirs: Sequence[Path], num_replicates: int | None = None) -> dict:
    """A sweep summary: the threshold both ways with intervals, the training dynamics (t*, α), and one row per
    finished run. `run_dirs` are the sweep's cells, finished or not; damaged cells are listed under
    `damaged_cells`, never summarised.

    A sweep whose runs differ in more than M, batch, steps and seed (D, width, depth, weight decay, …) is never
    pooled: each row gets its `setting` label ("D=4, K=16"), `settings` holds each setting's own threshold and
    dynamics (`setting_summary` gives one as a whole summary), and the top-level threshold is "per setting"."""
    damaged: dict = {}
    rows = summary_rows(run_dirs, damaged)
    dirs = {RunStore(d).name: d for d in run_dirs}
    configs = {r["name"]: run_config_from_dict(RunStore(dirs[r["name"]]).config()).to_dict() for r in rows}
    fields = setting_fields(list(configs.values()))
    metrics = run_metrics(workdir)
    if not fields:
        summary = _analyse(workdir, rows, metrics, num_replicates)
    else:
        for row in rows:
            row["setting"] = setting_label(configs[row["name"]], fields)
        labels = list(dict.fromkeys(r["setting"] for r in rows))  # grid order
        summary = {"method": PER_SETTING, "threshold_log2_num_tasks": math.nan,
                   "threshold_interval": [math.nan, math.nan], "threshold_located": PER_SETTING,
                   "interval_source": "", "num_seeds": len({r["seed"] for r in rows}), "threshold_rule": threshold.RULE,
                   "threshold_reason": f"the runs differ in {', '.join(fields)}: one threshold per setting, never "
                                       "pooled across settings (see settings)",
                   "crossing": {}, "midpoint": {}, "setting_fields": fields,
                   "settings": {label: _analyse(workdir, [r for r in rows if r["setting"] == label], metrics,
                                                num_replicates) for label in labels}}
    summary.update({"complete": len(rows) == len(run_dirs), "num_cells": len(run_dirs), "cells": rows,
                    "threshold_metric": names.THRESHOLD_METRIC, "damaged_cells": damaged,
                    "run_dirs": sorted(str(Path(d).relative_to(workdir)) for d in run_dirs),
                    "fingerprint": fingerprint(run_dirs)})
    return summary


def settings_of(summary: Mapping) -> list[str]:
    """The setting labels of a sweep summary, in grid order (empty for a sweep of one setting)."""
    return list(summary.get("settings", {}))


def setting_summary(summary: Mapping, label: str) -> dict:
    """One setting of a multi-setting sweep summary as a summary of its own (its rows as `cells`, `setting` named);
    StoreError naming the settings there are when `label` is not one of them."""
    settings = summary.get("settings", {})
    if label not in settings:
        raise StoreError(f"setting {label!r} is not in this sweep; it has "
                         + (", ".join(repr(s) for s in settings) if settings else "one setting only"))
    rows = [r for r in summary["cells"] if r.get("setting") == label]
    return {**settings[label], "cells": rows, "setting": label, "setting_fields": summary["setting_fields"],
            "complete": summary["complete"], "threshold_metric": summary["threshold_metric"]}


def stale_summary(workdir: Path, summary: Mapping | None = None) -> str | None:
    """Why the stored sweep summary (`summary`, if already read) no longer describes its runs (None when it does,
    or cannot tell: no summary, or one written before fingerprints existed)."""
    if summary is None:
        if not (Path(workdir) / names.SWEEP_SUMMARY_FILE).exists():
            return None
        summary = load_summary(workdir)
    if "fingerprint" not in summary or "run_dirs" not in summary:
        return None
    run_dirs = [Path(workdir) / d for d in summary["run_dirs"]]
    if fingerprint(run_dirs) != summary["fingerprint"]:
        return f"runs under {workdir} changed since {names.SWEEP_SUMMARY_FILE} was written"
    return None


def current_summary(workdir: Path, print_fn=print) -> dict:
    """The stored sweep summary, re-summarised first (with a line saying so) when its runs changed since it was
    written; StoreError when there is none. A folder that cannot be written (read-only) keeps its file: the new
    summary is then used in memory only, with a line saying so."""
    summary = load_summary(workdir)
    reason = stale_summary(workdir, summary)
    if reason is None:
        return summary
    print_fn(f"{reason}: re-summarising")
    summary = compute_summary(workdir, [Path(workdir) / d for d in summary["run_dirs"]])
    try:
        write_json(Path(workdir) / names.SWEEP_SUMMARY_FILE, summary)
    except StoreError as e:
        print_fn(f"{e}: this summary is used in memory only")
    return json.loads(json.dumps(summary, sort_keys=True))  # as load_summary would read it


def run_metrics(workdir: Path) -> dict[str, list[dict]]:
    """{run name: metrics records} for every run under `workdir`."""
    return {run.name: run.metrics() for run in iter_runs(Path(workdir) / names.RUNS_DIR)}


def load_summary(workdir: Path) -> dict:
    """The stored sweep summary; StoreError when there is none, or when it pools runs of several settings (written
    before settings were summarised apart)."""
    path = Path(workdir) / names.SWEEP_SUMMARY_FILE
    if not path.exists():
        raise StoreError(f"no {names.SWEEP_SUMMARY_FILE} in {workdir}: run the sweep (or --summarize) first")
    summary = read_json(path)
    cells = [(r["batch_size"], r["steps"], r["num_tasks"], r["seed"]) for r in summary.get("cells", [])]
    if "settings" not in summary and len(set(cells)) < len(cells):
        raise StoreError(f"{path} pools runs of different settings (two runs of one M, budget and seed); summarise "
                         f"it again: python experiments/sweep.py --workdir={workdir} --summarize")
    return summary


TABLE_COLUMNS = ((names.loss_key(names.PRETRAIN, names.PT), "L/D PT pre"),
                 (names.loss_key(names.PRETRAIN, names.DMMSE), "L/D dMMSE pre"),
                 (names.delta_key(names.PRETRAIN, "pt_dmmse"), "Δ PT,dMMSE pre"),
                 (names.loss_key(names.TRUE, names.PT), "L/D PT true"),
                 (names.loss_key(names.TRUE, names.RIDGE), "L/D ridge true"),
                 (names.delta_key(names.TRUE, "pt_ridge"), "Δ PT,Ridge true"),
                 (names.delta_key(names.TRUE, "dmmse_ridge"), "Δ dMMSE,Ridge true"))


def _mean_and_spread(values: Sequence[float]) -> str:
    """'mean' for one seed, 'mean±sd' (sample standard deviation over seeds) for several."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return f"{mean:.4f}"
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return f"{mean:.4f}±{sd:.4f}"


def format_table(rows: Sequence[dict]) -> str:
    """One line per cell (M, batch, steps) at the final evaluation: L/D and Δ on both distributions as the mean
    over the cell's finished seeds ± their standard deviation. Diverged seeds are named at the end of the line and
    never averaged in."""
    grouped: dict = {}
    settings = [row.get("setting", "") for row in rows]
    for row in rows:
        setting = row.get("setting", "")
        grouped.setdefault((settings.index(setting), row["batch_size"], row["steps"], row["num_tasks"] or math.inf),
                           []).append(row)
    width = max(len(s) for s in settings) if any(settings) else 0
    setting_column = f"{'setting':<{width}} " if width else ""
    header = (setting_column + f"{'M':>7} {'B':>5} {'steps':>7} {'seeds':>5} "
              + " ".join(f"{label:>17}" for _, label in TABLE_COLUMNS))
    caption = ("final evaluation, mean ± standard deviation over seeds (diverged seeds not averaged); L/D against "
               "the noisy targets; pre = T_pretrain, true = T_true")
    if all(len({r["seed"] for r in group}) < 2 for group in grouped.values()):
        caption += "; one seed per cell: no seed spread, and the threshold's interval covers evaluation noise only"
    lines = [caption, header, "-" * len(header)]
    for (_, batch, steps, _), group in sorted(grouped.items()):
        done = [r for r in group if r["status"] == names.DONE]
        diverged = sorted(r["seed"] for r in group if r["status"] == names.DIVERGED)
        values = [_mean_and_spread([r["final"][key] for r in done]) if done else "—" for key, _ in TABLE_COLUMNS]
        flag = f"  diverged: seed {', '.join(map(str, diverged))}" if diverged else ""
        setting = f"{group[0].get('setting', ''):<{width}} " if width else ""
        lines.append(setting + f"{num_tasks_label(group[0]['num_tasks']):>7} {batch:>5} {steps:>7} {len(done):>5} "
                     + " ".join(f"{v:>17}" for v in values) + flag)
    return "\n".join(lines)


def format_log2(value: float) -> str:
    """log2 M for printing; ±inf are beyond the sweep's M values."""
    if math.isnan(value):
        return "nan"
    return "below grid" if value == -math.inf else "above grid" if value == math.inf else f"{value:.2f}"


def _m(value: float) -> str:
    return f"{2 ** value:.1f}" if math.isfinite(value) else format_log2(value)


def _where(value: float) -> str:
    """'log2 M* = 2.44 (M* ≈ 5.4)', or where M* lies when it is outside the grid."""
    if math.isfinite(value):
        return f"log2 M* = {value:.2f} (M* ≈ {2 ** value:.1f})"
    return "not located" if math.isnan(value) else f"M* {format_log2(value)} (beyond this sweep's M)"


def _budget_text(key: str) -> str:
    """'B=64_N=2500' → 'B=64, N=2,500'."""
    batch, steps = threshold.parse_budget_key(key)
    return f"B={batch}, N={steps:,}"


def _sign_change_lines(estimate: Mapping[str, Any]) -> list[str]:
    lines = []
    for change in estimate.get("sign_changes", []):
        lo, hi = change["interval"]
        a, b = change["between_num_tasks"]
        lines.append(f"  sign change {change['direction'][0]}→{change['direction'][1]} at log2 M = "
                     f"{change['log2_num_tasks']:.2f} (M = {a}…{b}): 95% interval [{format_log2(lo)}, "
                     f"{format_log2(hi)}], in {100 * change['support']:.0f}% of replicates"
                     + ("  ← M*" if change["is_threshold"] else ""))
    return lines


def _seed_mean(rows: Sequence[dict], budget_key: str, num_tasks: int) -> float:
    values = [r["final"][names.THRESHOLD_METRIC] for r in rows if r["status"] == names.DONE
              and r["num_tasks"] == num_tasks and threshold.budget_key((r["batch_size"], r["steps"])) == budget_key]
    return sum(values) / len(values) if values else math.nan


def _interval_text(est: Mapping[str, Any]) -> str:
    lo, hi = est["interval"]
    return f"[{format_log2(lo)}, {format_log2(hi)}]"


def _per_setting(summary: Mapping[str, Any], what: str, format_one) -> str:
    """`format_one` of every setting of a multi-setting summary, each under its label."""
    lines = [f"{what}: per setting (the runs differ in {', '.join(summary['setting_fields'])}; settings are never "
             "pooled)"]
    for label in settings_of(summary):
        lines.append(f"setting {label}:")
        lines += ["  " + line for line in format_one(setting_summary(summary, label)).splitlines()]
    return "\n".join(lines)


def format_dynamics(summary: Mapping[str, Any]) -> str:
    """The training-dynamics block of a sweep summary (`dynamics.format_dynamics`), per setting where there are
    several."""
    if settings_of(summary):
        return _per_setting(summary, "training dynamics", dynamics.format_dynamics)
    return dynamics.format_dynamics(summary)


def format_threshold(summary: Mapping[str, Any]) -> str:
    """The threshold with its interval and what the interval covers; per crossing, both budgets' Δ and their
    paired difference at every M with its standard error; every sign change with its own interval. Per setting
    where the sweep has several."""
    if settings_of(summary):
        return _per_setting(summary, "threshold", format_threshold)
    x = summary["threshold_log2_num_tasks"]
    if summary["method"] == "none" or math.isnan(x):
        lines = ["threshold: not located (no finite-M cells of a budget)"]
    else:
        lo, hi = summary["threshold_interval"]
        lines = [f"threshold ({summary['method']}): {_where(x)}, 95% interval "
                 f"[{format_log2(lo)}, {format_log2(hi)}] (M* ≈ {_m(lo)} … {_m(hi)})",
                 f"  interval over {summary.get('interval_source', '')}"]
        if summary.get("threshold_reason"):
            lines.append(f"  why this estimate: {summary['threshold_reason']}")
    lines.append(f"  rule: {summary.get('threshold_rule', threshold.RULE)}")
    rows = summary.get("cells", [])
    for label, est in threshold.in_budget_order(summary["crossing"]):
        small, large = label.split("_vs_")
        lines.append(f"crossing of {_budget_text(small)} and {_budget_text(large)}: {_where(est['log2_num_tasks'])}"
                     f", 95% interval {_interval_text(est)}; Δ = Δ_PT,Ridge on T_true, mean over seeds")
        lines.append(f"  {'M':>7} {'Δ smaller':>10} {'Δ larger':>10} {'larger − smaller':>17} {'± se':>8} "
                     f"{'z':>6} {'seeds':>5}")
        for p in est.get("per_num_tasks", []):
            lines.append(f"  {p['num_tasks']:>7} {_seed_mean(rows, small, p['num_tasks']):>10.4f} "
                         f"{_seed_mean(rows, large, p['num_tasks']):>10.4f} {p['value']:>+17.4f} {p['se']:>8.4f} "
                         f"{p['z']:>6.1f} {p['num_seeds']:>5}" + ("" if p.get("used", True) else
                                                                   "  left out: one seed among several"))
        lines += _sign_change_lines(est)
    for label, est in threshold.in_budget_order(summary["midpoint"]):
        lines.append(f"midpoint of {_budget_text(label)} (Δ_PT,Ridge = Δ_PT,dMMSE on T_true): "
                     f"{_where(est['log2_num_tasks'])}, 95% interval {_interval_text(est)}")
        if len(est.get("sign_changes", [])) > 1:
            lines += _sign_change_lines(est)
    return "\n".join(lines)
