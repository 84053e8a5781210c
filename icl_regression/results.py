"""Reading a sweep's results: rows of finished cells, the sweep summary with its threshold, tables.

Numpy and JSON only (no jax), so notebooks and figure scripts can use it on any machine.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from icl_regression import dynamics, names, threshold
from icl_regression.config import num_tasks_label
from icl_regression.store import RunStore, StoreError, iter_runs, read_json, write_json

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
        for name in (names.SUMMARY_FILE, names.METRICS_FILE):
            path = run_dir / name
            digest.update(f"{run_dir.name}/{name}:".encode())
            digest.update(path.read_bytes() if path.exists() else b"-")
    return digest.hexdigest()[:16]


def summarize(workdir: Path, run_dirs: Sequence[Path], num_replicates: int | None = None) -> dict:
    """Writes `sweep_summary.json`: the threshold both ways with intervals, the training dynamics (t*, α), and
    one row per finished run. `run_dirs` are the sweep's cells, finished or not; damaged cells are listed under
    `damaged_cells`, never summarised."""
    damaged: dict = {}
    rows = summary_rows(run_dirs, damaged)
    summary = threshold.estimate_thresholds(rows, num_replicates)
    summary.update({"complete": len(rows) == len(run_dirs), "num_cells": len(run_dirs), "cells": rows,
                    "threshold_metric": names.THRESHOLD_METRIC, "damaged_cells": damaged,
                    "run_dirs": sorted(str(Path(d).relative_to(workdir)) for d in run_dirs),
                    "fingerprint": fingerprint(run_dirs)})
    sweep_config = Path(workdir) / names.SWEEP_CONFIG_FILE
    analysis = dynamics.analysis_settings(read_json(sweep_config) if sweep_config.exists() else None)
    summary.update(dynamics.summarize_dynamics(run_metrics(workdir), rows, **analysis))
    write_json(Path(workdir) / names.SWEEP_SUMMARY_FILE, summary)
    return summary


def stale_summary(workdir: Path) -> str | None:
    """Why the stored sweep summary no longer describes its runs (None when it does, or cannot tell: no summary,
    or one written before fingerprints existed)."""
    if not (Path(workdir) / names.SWEEP_SUMMARY_FILE).exists():
        return None
    summary = load_summary(workdir)
    if "fingerprint" not in summary or "run_dirs" not in summary:
        return None
    run_dirs = [Path(workdir) / d for d in summary["run_dirs"]]
    if fingerprint(run_dirs) != summary["fingerprint"]:
        return f"runs under {workdir} changed since {names.SWEEP_SUMMARY_FILE} was written"
    return None


def refresh_summary(workdir: Path, print_fn=print) -> dict | None:
    """Re-summarises a sweep (with a line saying so) whose runs changed since its summary was written; returns
    the new summary, or None when nothing had to be done."""
    reason = stale_summary(workdir)
    if reason is None:
        return None
    print_fn(f"{reason}: re-summarising")
    return summarize(workdir, [Path(workdir) / d for d in load_summary(workdir)["run_dirs"]])


def run_metrics(workdir: Path) -> dict[str, list[dict]]:
    """{run name: metrics records} for every run under `workdir`."""
    return {run.name: run.metrics() for run in iter_runs(Path(workdir) / names.RUNS_DIR)}


def load_summary(workdir: Path) -> dict:
    path = Path(workdir) / names.SWEEP_SUMMARY_FILE
    if not path.exists():
        raise StoreError(f"no {names.SWEEP_SUMMARY_FILE} in {workdir}: run the sweep (or --summarize) first")
    return read_json(path)


def format_table(rows: Sequence[dict]) -> str:
    """The cells averaged over seeds: M, budget, L/D and Δ on both distributions."""
    columns = [(names.loss_key(names.PRETRAIN, names.PT), "L/D PT pre"),
               (names.loss_key(names.PRETRAIN, names.DMMSE), "L/D dMMSE pre"),
               (names.delta_key(names.PRETRAIN, "pt_dmmse"), "Δ PT,dMMSE pre"),
               (names.loss_key(names.TRUE, names.PT), "L/D PT true"),
               (names.loss_key(names.TRUE, names.RIDGE), "L/D ridge true"),
               (names.delta_key(names.TRUE, "pt_ridge"), "Δ PT,Ridge true"),
               (names.delta_key(names.TRUE, "dmmse_ridge"), "Δ dMMSE,Ridge true")]
    grouped: dict = {}
    for row in rows:
        grouped.setdefault((row["batch_size"], row["steps"], row["num_tasks"] or math.inf), []).append(row)
    header = f"{'M':>7} {'B':>5} {'steps':>7} {'seeds':>5} " + " ".join(f"{label:>18}" for _, label in columns)
    lines = [header, "-" * len(header)]
    for (batch, steps, _), group in sorted(grouped.items()):
        values = [sum(r["final"][key] for r in group) / len(group) for key, _ in columns]
        flag = " diverged" if any(r["status"] == names.DIVERGED for r in group) else ""
        lines.append(f"{num_tasks_label(group[0]['num_tasks']):>7} {batch:>5} {steps:>7} {len(group):>5} "
                     + " ".join(f"{v:>18.4f}" for v in values) + flag)
    return "\n".join(lines)


def format_threshold(summary: Mapping[str, Any]) -> str:
    lines = []
    for method in ("crossing", "midpoint"):
        for label, est in summary[method].items():
            x, (lo, hi) = est["log2_num_tasks"], est["interval"]
            lines.append(f"  {method:9s} {label:32s} log2 M* = {x:6.2f}  (M* ≈ {2**x if math.isfinite(x) else x:8.1f})"
                         f"  95% interval [{lo:.2f}, {hi:.2f}]  ({est['replicates_with_estimate']}/"
                         f"{est['replicates']} replicates)")
    x = summary["threshold_log2_num_tasks"]
    lo, hi = summary["threshold_interval"]
    head = (f"threshold ({summary['method']}): log2 M* = {x:.2f}, interval [{lo:.2f}, {hi:.2f}]"
            if math.isfinite(x) else f"threshold ({summary['method']}): not located in this range of M")
    return "\n".join([head] + lines)
