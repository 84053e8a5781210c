"""Does a fast training path change the science? One group of models spanning the transition (several M, at least
two seeds) is trained twice, from the same initialisations and the same data streams: on the float32 path the
sweeps use and on a fast path (`ModelConfig.fast_path`, e.g. bfloat16 with fused kernels). Evaluation is float32
on both (`model.evaluation_model`). The final Δ_{PT,Ridge} and Δ_{PT,dMMSE} on both evaluation distributions are
compared, per M, with the seed-to-seed spread of the float32 path: a fast path whose mean moves by more than that
spread changes the science and is not used for the paper's sweeps (experiments/PERFORMANCE.md).

The verdict reads the paired differences d = fast − float32 of each seed (same initialisation, same data), whose
mean d̄ has a standard error se from their own scatter, against the float32 seed-to-seed standard deviation σ:
a row is *within* when |d̄| + t·se ≤ σ, *beyond* when |d̄| − t·se > σ, else *unclear* (t: Student's 97.5%
quantile, S − 1 degrees of freedom). The whole check says "within the seed spread" only when every row is within
and there are at least `MIN_SEEDS_FOR_WITHIN` seeds (with two, σ rests on one degree of freedom and is near 0
by chance often enough to fail a fast path that changes nothing, or to pass one by luck); "changes the science"
when any row is beyond or a run did not finish; else "inconclusive: more seeds".
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import re
import time
from pathlib import Path
from typing import Callable

import jax
import numpy as np

from icl_regression import dynamics, engine, names, store
from icl_regression.config import RunConfig, fast_path_overrides, num_tasks_label
from icl_regression.store import RunStore

# The compared metrics: Δ of the transformer from each Bayes estimator, on each evaluation distribution.
METRICS = tuple(names.delta_key(eval_set, pair) for eval_set in names.EVAL_SETS for pair in ("pt_ridge", "pt_dmmse"))
REFERENCE_PATH = "float32"
MIN_SEEDS_FOR_WITHIN = 3
WITHIN, BEYOND, UNCLEAR = "within", "beyond", "unclear"
VERDICTS = {WITHIN: "within the seed spread", BEYOND: "changes the science", UNCLEAR: "inconclusive: more seeds"}


@dataclasses.dataclass(frozen=True)
class PrecisionSpec:
    base: RunConfig  # everything but M, the seed and the compute path
    num_tasks: tuple[int, ...]  # M of the group's models (0 = ∞), spanning the transition
    seeds: tuple[int, ...]  # at least two: the spread the difference is measured against
    fast_path: str  # the ModelConfig.fast_path label compared with float32

    def __post_init__(self):
        if len(self.seeds) < 2 or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds={self.seeds!r}: need at least two distinct seeds for a seed-to-seed spread "
                             f"({MIN_SEEDS_FOR_WITHIN} for a verdict of 'within')")
        if len(self.num_tasks) < 2 or len(set(self.num_tasks)) != len(self.num_tasks):
            raise ValueError(f"num_tasks={self.num_tasks!r}: need at least two distinct M, spanning the transition")
        if self.fast_path == REFERENCE_PATH:
            raise ValueError(f"fast_path={self.fast_path!r} is the reference path; name another")
        fast_path_overrides(self.fast_path)  # a bad label fails before anything trains

    def configs(self, path: str) -> list[RunConfig]:
        """One config per (M, seed) on `path`: one group, one compiled program."""
        model = fast_path_overrides(path)
        return [self.base.replace(model=model, data={"num_tasks": m}, train={"seed": s})
                for m in self.num_tasks for s in self.seeds]


def train_path(spec: PrecisionSpec, path: str, workdir: Path,
               progress: Callable[[engine.Progress], None] | None = None) -> tuple[list[dict], float]:
    """Trains (or resumes, or finds finished) the group on `path` under `workdir/path`; its summaries and the
    wall time this call took."""
    cfgs = spec.configs(path)
    run_dirs = [Path(workdir) / path / cfg.run_name for cfg in cfgs]
    start = time.perf_counter()
    if any(RunStore(d).summary() is None for d in run_dirs):
        engine.GroupTrainer(cfgs, run_dirs).run(progress)
    return [RunStore(d).summary() for d in run_dirs], time.perf_counter() - start


def row_status(difference: float, standard_error: float, spread: float, num_seeds: int) -> str:
    """within / beyond / unclear: the mean paired difference, give or take t standard errors, against the seed
    spread (the module docstring's rule)."""
    margin = dynamics.student_t_quantile(num_seeds - 1) * standard_error
    if abs(difference) + margin <= spread:
        return WITHIN
    if abs(difference) - margin > spread:
        return BEYOND
    return UNCLEAR


def compare(spec: PrecisionSpec, summaries: dict[str, list[dict]]) -> dict:
    """Per (M, metric): each path's final values per seed, the mean paired difference (fast − float32) with its
    standard error, the float32 seed-to-seed standard deviation, their ratio and the row's status; the verdict."""
    rows = []
    by_key = {path: {(s["num_tasks"], s["seed"]): s for s in sums} for path, sums in summaries.items()}
    num_seeds = len(spec.seeds)
    for num_tasks in spec.num_tasks:
        for metric in METRICS:
            values = {path: np.array([by_key[path][(num_tasks, seed)]["final"][metric] for seed in spec.seeds])
                      for path in (REFERENCE_PATH, spec.fast_path)}
            reference, fast = values[REFERENCE_PATH], values[spec.fast_path]
            paired = fast - reference  # same seed: same initialisation and data
            spread = float(np.std(reference, ddof=1))
            difference = float(paired.mean())
            standard_error = float(np.std(paired, ddof=1) / np.sqrt(num_seeds))
            rows.append({
                "num_tasks": num_tasks, "num_tasks_label": num_tasks_label(num_tasks), "metric": metric,
                "seeds": list(spec.seeds), REFERENCE_PATH: reference.tolist(), "fast": fast.tolist(),
                "float32_mean": float(reference.mean()), "fast_mean": float(fast.mean()),
                "difference": difference, "difference_standard_error": standard_error, "seed_spread": spread,
                "ratio": abs(difference) / spread if spread > 0 else (0.0 if difference == 0 else math.inf),
                "status": row_status(difference, standard_error, spread, num_seeds),
                "paired_max_abs_difference": float(np.max(np.abs(paired))),
            })
    ratios = [r["ratio"] for r in rows]
    statuses = {path: sorted({s["status"] for s in sums}) for path, sums in summaries.items()}
    finished = all(s == [names.DONE] for s in statuses.values())
    kinds = {r["status"] for r in rows}
    if BEYOND in kinds or not finished:
        verdict = BEYOND
    elif kinds == {WITHIN} and num_seeds >= MIN_SEEDS_FOR_WITHIN:
        verdict = WITHIN
    else:
        verdict = UNCLEAR
    return {
        "rows": rows,
        "max_ratio": max(ratios),
        "median_ratio": float(np.median(ratios)),
        "verdict": VERDICTS[verdict],
        "within_seed_spread": verdict == WITHIN,
        "row_counts": {kind: sum(r["status"] == kind for r in rows) for kind in (WITHIN, UNCLEAR, BEYOND)},
        "statuses": statuses,
        "rule": ("per M and metric, the mean paired difference d (fast − float32, same seed) ± t·se against the "
                 "float32 seed-to-seed standard deviation σ: within if |d| + t·se ≤ σ, beyond if |d| − t·se > σ; "
                 f"'{VERDICTS[WITHIN]}' if every row is within with ≥ {MIN_SEEDS_FOR_WITHIN} seeds and no run "
                 f"diverged, '{VERDICTS[BEYOND]}' if a row is beyond or a run diverged, else '{VERDICTS[UNCLEAR]}'"),
    }


def run_precision_check(spec: PrecisionSpec, workdir: Path,
                        progress: Callable[[str, engine.Progress], None] | None = None,
                        save: Callable[[dict], object] | None = None) -> dict:
    """Trains both paths and returns the comparison as a JSON-ready record. `save` gets the record after the
    float32 path (`complete` false, its final values per (M, seed) under `float32_finals`) and is what a run cut
    off by a time limit keeps; the returned record is complete."""
    device = jax.devices()[0]
    record = {
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "complete": False,
        "device": {"kind": device.device_kind, "platform": device.platform},
        "jax": jax.__version__,
        "fast_path": spec.fast_path, "num_tasks": list(spec.num_tasks), "seeds": list(spec.seeds),
        "config": spec.base.to_dict(),
        # What the label meant when this ran (config.FAST_PATH may change later): the fast model's fields.
        "fast_model": spec.base.replace(model=fast_path_overrides(spec.fast_path)).to_dict()["model"],
        "wall_s": {},  # this call's training + evaluation time per path (0 where already finished)
    }
    summaries = {}
    for path in (REFERENCE_PATH, spec.fast_path):
        report = None if progress is None else (lambda p, path=path: progress(path, p))
        summaries[path], record["wall_s"][path] = train_path(spec, path, workdir, report)
        if path == REFERENCE_PATH and save is not None:
            record["float32_finals"] = [{"num_tasks": s["num_tasks"], "seed": s["seed"], "status": s["status"],
                                         **{m: s["final"][m] for m in METRICS}} for s in summaries[path]]
            save(record)
    record.update(compare(spec, summaries), complete=True)
    return record


def write_record(record: dict, out_dir: Path) -> Path:
    """`<out_dir>/<device>_L<layers>_d<width>_B<batch>_<timestamp>.json`, written atomically."""
    model, train = record["config"]["model"], record["config"]["train"]
    stamp = datetime.datetime.fromisoformat(record["timestamp"]).strftime("%Y%m%dT%H%M%SZ")
    device = re.sub(r"[^a-z0-9]+", "-", record["device"]["kind"].lower()).strip("-") or "device"
    path = Path(out_dir) / f"{device}_L{model['num_layers']}_d{model['d_model']}_B{train['batch_size']}_{stamp}.json"
    store.write_json(path, record)
    return path


def format_table(record: dict) -> str:
    """One line per (M, metric): means, difference, spread, ratio."""
    counts = record.get("row_counts", {})
    lines = [f"fast path {record['fast_path']} vs float32, seeds {record['seeds']}: {record.get('verdict')} "
             f"(rows within / unclear / beyond: {counts.get(WITHIN)} / {counts.get(UNCLEAR)} / {counts.get(BEYOND)}; "
             f"max |paired difference| / seed spread {record['max_ratio']:.2f})"]
    for r in record["rows"]:
        lines.append(f"  M={r['num_tasks_label']:>6} {r['metric']:<22} float32 {r['float32_mean']:.4g}  "
                     f"fast {r['fast_mean']:.4g}  diff {r['difference']:+.3g} ± {r['difference_standard_error']:.2g}"
                     f"  spread {r['seed_spread']:.3g}  ratio {r['ratio']:.2f}  {r['status']}")
    return "\n".join(lines)
