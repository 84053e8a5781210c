"""A sweep trained on Laplace tasks against the Bayes estimator of the Laplace prior (paper Fig 14).

With `data.task_prior = "laplace"` every task has i.i.d. Laplace(0, τ/√2) coordinates: T_true is that prior, ridge
(λ = σ²/τ²) remains the best *linear* estimator but not the Bayes one, which is the Laplace posterior mean
(`estimators.laplace_preds`, a seeded Gibbs sampler). Past the threshold, does the transformer approach the Bayes
estimator of the prior it was trained on, or ridge? For every chosen run this evaluates, on the run's own
evaluation sets, the model, ridge, dMMSE and the Laplace posterior mean (L/D, and the distances Δ between them).
It needs the model's parameters (checkpoints, or retraining into a scratch folder: `trained.load_trained`).
"""

from __future__ import annotations

import dataclasses

import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from icl_regression import estimators, names, predictors, rng, trained
from icl_regression.store import write_json

ANALYSIS_INDEX = 3  # this analysis's sub-stream of rng.Stream.EVAL_TASKS
PREDICTORS = (names.PT, names.RIDGE, names.DMMSE, names.LAPLACE_MMSE)
DEFAULT_NUM_SAMPLES = estimators.LAPLACE_NUM_SAMPLES  # Gibbs sweeps per chain (after burn-in)
DEFAULT_BURN_IN = estimators.LAPLACE_BURN_IN


def _laplace(cfg, eval_set: str, data, num_samples: int, burn_in: int, cache: dict) -> np.ndarray:
    """Laplace posterior-mean predictions on one evaluation set, computed once per set (T_true is shared by every
    run; a T_pretrain set by the runs of one pool and M)."""
    pool_id = trained.pool_id_of(cfg)
    identity = ("true",) if eval_set == names.TRUE or cfg.data.num_tasks == 0 else (
        "pretrain", pool_id.seed, pool_id.salt, cfg.data.num_tasks)
    data_cfg = dataclasses.replace(cfg.data, num_tasks=0) if identity == ("true",) else cfg.data  # T_true: any M
    cache_key = (data_cfg, cfg.eval, identity)
    if cache_key not in cache:
        key = rng.stream_key(cfg.eval.seed, rng.Stream.EVAL_TASKS, ANALYSIS_INDEX, *identity[1:])
        cache[cache_key] = np.asarray(predictors.predict(names.LAPLACE_MMSE, cfg.data, data.xs, data.ys,
                                                         key=key, num_samples=num_samples, burn_in=burn_in))
    return cache[cache_key]


def compare_run(run: trained.TrainedRun, num_samples: int, burn_in: int, cache: dict) -> dict:
    """L/D of every predictor and Δ of every pair, per position and averaged, on both evaluation sets."""
    cfg, dim = run.config, run.config.data.dim
    out = {}
    for eval_set, data in trained.eval_sets(cfg).items():
        preds = {names.PT: np.asarray(trained.model_preds(run, data.xs, data.ys)),
                 names.RIDGE: np.asarray(data.ridge), names.DMMSE: np.asarray(data.dmmse),
                 names.LAPLACE_MMSE: _laplace(cfg, eval_set, data, num_samples, burn_in, cache)}
        loss = {p: predictors.per_position_loss(preds[p], data.ys, dim) for p in PREDICTORS}
        delta = {pair: predictors.distance(preds[f], preds[g], dim) for pair, f, g in names.LAPLACE_PAIRS}
        out[eval_set] = {"loss": {p: {"mean": float(v.mean()), "per_position": v.tolist()} for p, v in loss.items()},
                         "delta": {p: {"mean": float(v.mean()), "per_position": v.tolist()} for p, v in delta.items()}}
    return out


def run_laplace_comparison(workdir: Path, scratch: Path | None = None, num_tasks: Sequence | None = None,
                           batch_sizes: Sequence[int] | None = None, num_samples: int = DEFAULT_NUM_SAMPLES,
                           burn_in: int = DEFAULT_BURN_IN, retrain_rtol: float = 0.0, out: Path | None = None,
                           print_fn: Callable[[str], None] = print) -> dict:
    """The comparison for the chosen finished runs (default: all) of a Laplace-task sweep, written to
    `<workdir>/analysis/laplace_comparison.json` (or `out`) and returned."""
    started = time.perf_counter()
    cells = trained.select_cells(trained.sweep_cells(workdir), num_tasks, batch_sizes)
    priors = {c.config.data.task_prior for c in cells}
    if priors != {"laplace"}:
        raise ValueError(f"{workdir} was trained with data.task_prior={sorted(priors)}; this analysis compares a "
                         "sweep trained on Laplace tasks (data.task_prior='laplace', e.g. "
                         "experiments/configs/cpu_laplace.py) with the Laplace posterior mean")
    runs = trained.load_trained(workdir, cells, scratch, retrain_rtol, print_fn)
    cache: dict = {}
    rows = []
    for run in runs:
        cfg = run.config
        result = compare_run(run, num_samples, burn_in, cache)
        rows.append({"name": run.name, "num_tasks": cfg.data.num_tasks, "batch_size": cfg.train.batch_size,
                     "steps": cfg.train.steps, "seed": cfg.train.seed, **run.describe(),
                     **result})
        true = result[names.TRUE]
        print_fn(f"[laplace] {run.name}: T_true L/D pt {true['loss'][names.PT]['mean']:.4f}, laplace "
                 f"{true['loss'][names.LAPLACE_MMSE]['mean']:.4f}, ridge {true['loss'][names.RIDGE]['mean']:.4f}; "
                 f"Δ pt-laplace {true['delta']['pt_laplace_mmse']['mean']:.4f}, pt-ridge "
                 f"{true['delta']['pt_ridge']['mean']:.4f}")
    result = {"analysis": "laplace_comparison", "sampler": {"num_samples": num_samples, "burn_in": burn_in},
              "loss": "L/D against the noisy targets on the runs' own evaluation sets (T_true: Laplace tasks)",
              "runs": rows, "wall_seconds": round(time.perf_counter() - started, 1)}
    write_json(Path(out) if out else Path(workdir) / names.ANALYSIS_DIR / names.LAPLACE_FILE, result)
    return result
