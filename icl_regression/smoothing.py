"""Smoothed dMMSE (paper Fig 12, SPEC experiment 6): is the transformer just a smoothed version of dMMSE?

dMMSE's prior is the pool itself; blurring each pool task into N(w(i), s²I) gives a family of Bayes estimators
from dMMSE (s = 0) towards least squares (large s). For each pool (seed, M) the smoothing std s* that does best on
T_true is found by search on a T_true set of its own (drawn from `EVAL_TASKS`, so the choice is not fitted to the
sequences it is judged on): a grid over s/τ, then two finer grids around the best point. Then smoothed dMMSE at s*
is evaluated on the run's own evaluation sets — the very sequences of its stored metrics — and compared there with
the transformer, dMMSE and ridge. The model's numbers are its stored final metrics, so this analysis needs no
parameters; rebuilding the sets is checked by recomputing the stored dMMSE and ridge losses.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from icl_regression import names, predictors, rng, tasks, trained
from icl_regression.config import INFINITE_TASKS
from icl_regression.store import write_json

ANALYSIS_INDEX = 2  # this analysis's sub-stream of rng.Stream.EVAL_TASKS
CHECK_RTOL = 1e-4


@dataclasses.dataclass(frozen=True)
class SmoothingOptions:
    grid_min: float = 0.01  # smallest s/τ of the coarse grid (s = 0, plain dMMSE, is always included)
    grid_max: float = 3.0  # largest s/τ
    grid_points: int = 25  # geometric grid between them
    refinements: int = 2  # finer grids (9 points between the best point's neighbours), one after another
    search_sequences: int = 0  # T_true sequences of the search set (0: the run's eval.num_sequences)

    def __post_init__(self):
        if not (0 < self.grid_min < self.grid_max < math.inf):
            raise ValueError(f"grid_min={self.grid_min!r}, grid_max={self.grid_max!r}; allowed: 0 < min < max, "
                             "both finite")
        if not (isinstance(self.grid_points, int) and self.grid_points >= 3):
            raise ValueError(f"grid_points={self.grid_points!r}; allowed: an integer >= 3")
        if not (isinstance(self.refinements, int) and self.refinements >= 0):
            raise ValueError(f"refinements={self.refinements!r}; allowed: an integer >= 0")
        if not (isinstance(self.search_sequences, int) and self.search_sequences >= 0):
            raise ValueError(f"search_sequences={self.search_sequences!r}; allowed: an integer >= 0 (0: as many as "
                             "the runs' evaluation sets)")


def _loss(data, name, xs, ys, pool, batch_size, **options) -> np.ndarray:
    preds = predictors.predict(name, data, xs, ys, pool, batch_size, **options)
    return predictors.per_position_loss(preds, ys, data.dim)


def search_set(cfg, num_sequences: int):
    """T_true sequences for choosing s, from the analysis stream (shared by every pool of the sweep)."""
    keys = tasks.evaluation_keys(cfg.eval.seed, rng.Stream.EVAL_TASKS, ANALYSIS_INDEX)
    xs, ys, _ = tasks.sample_sequences(keys, np.zeros((1, cfg.data.dim), np.float32), INFINITE_TASKS,
                                       num_sequences, cfg.data.context_len, cfg.data.noise_std,
                                       cfg.data.task_scale, task_prior=cfg.data.task_prior)
    return xs, ys


def best_smoothing(cfg, pool, xs, ys, options: SmoothingOptions) -> tuple[float, dict[float, float]]:
    """(s*, {s: L/D on the search set}) over s = 0, the geometric grid, and refinements around the best."""
    scale = cfg.data.task_scale
    curve: dict[float, float] = {}

    def evaluate(values):
        for s in values:
            s = float(s)
            if s not in curve:
                curve[s] = float(_loss(cfg.data, names.SMOOTHED_DMMSE, xs, ys, pool, cfg.eval.batch_size,
                                       smoothing_std=s).mean())

    evaluate([0.0, *(scale * np.geomspace(options.grid_min, options.grid_max, options.grid_points))])
    for _ in range(options.refinements):
        grid = sorted(curve)
        best = grid.index(min(curve, key=curve.get))
        lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
        values = np.geomspace(max(lo, hi * 1e-3), hi, 9) if lo == 0 else np.geomspace(lo, hi, 9)
        evaluate(values)
    return min(curve, key=curve.get), dict(sorted(curve.items()))


def _check(stored: dict, key: str, recomputed: np.ndarray, what: str) -> None:
    expected = np.asarray(stored[key])
    if not np.allclose(recomputed, expected, rtol=CHECK_RTOL, atol=0):
        raise ValueError(f"rebuilt evaluation sets do not reproduce the stored {key} of {what} "
                         f"({np.round(recomputed, 5).tolist()} against {expected.tolist()}): not the same sets")


def _pool_result(cell, options: SmoothingOptions, search) -> dict:
    cfg = cell.config
    data, batch = cfg.data, cfg.eval.batch_size
    pool = trained.pool_of(cfg)
    best, curve = best_smoothing(cfg, pool, *search, options)
    stored = trained.final_record(cell.run_dir)["per_position"]
    out = {"seed": cfg.train.seed, "num_tasks": data.num_tasks, "best_smoothing_std": best,
           "search_curve": {"smoothing_std": list(curve), "loss_true_search": list(curve.values())}}
    for eval_set, sets in trained.eval_sets(cfg).items():
        _check(stored, names.loss_key(eval_set, names.DMMSE),
               predictors.per_position_loss(sets.dmmse, sets.ys, data.dim), cell.name)
        _check(stored, names.loss_key(eval_set, names.RIDGE),
               predictors.per_position_loss(sets.ridge, sets.ys, data.dim), cell.name)
        smoothed = _loss(data, names.SMOOTHED_DMMSE, sets.xs, sets.ys, pool, batch, smoothing_std=best)
        out[eval_set] = {
            names.SMOOTHED_DMMSE: {"mean": float(smoothed.mean()), "per_position": smoothed.tolist()},
            names.DMMSE: {"mean": float(np.mean(stored[names.loss_key(eval_set, names.DMMSE)])),
                          "per_position": stored[names.loss_key(eval_set, names.DMMSE)]},
            names.RIDGE: {"mean": float(np.mean(stored[names.loss_key(eval_set, names.RIDGE)])),
                          "per_position": stored[names.loss_key(eval_set, names.RIDGE)]},
        }
    # The trade-off along s on the run's own T_pretrain set: what smoothing costs on the pool.
    pre = trained.eval_sets(cfg)[names.PRETRAIN]
    out["search_curve"]["loss_pretrain"] = [
        float(_loss(data, names.SMOOTHED_DMMSE, pre.xs, pre.ys, pool, batch, smoothing_std=s).mean())
        for s in curve]
    return out


def run_smoothing(workdir: Path, num_tasks: Sequence | None = None, batch_sizes: Sequence[int] | None = None,
                  options: SmoothingOptions | None = None, out: Path | None = None,
                  print_fn: Callable[[str], None] = print) -> dict:
    """s* per pool and the model against smoothed dMMSE at s*, for the chosen finished finite-M runs (default:
    all), written to `<workdir>/analysis/smoothing.json` (or `out`) and returned."""
    options = options or SmoothingOptions()
    started = time.perf_counter()
    cells = trained.select_cells(trained.sweep_cells(workdir), num_tasks, batch_sizes, finite_only=True)
    by_pool: dict = {}
    for cell in cells:  # runs of other budgets share their pool's sets and s*
        by_pool.setdefault((trained.pool_id_of(cell.config), cell.config.data.num_tasks), cell)
    searches: dict = {}
    pools = []
    for (pool_id, num_tasks_), cell in sorted(by_pool.items(), key=lambda kv: (kv[0][0].seed, kv[0][0].salt,
                                                                                kv[0][1])):
        cfg = cell.config
        size = options.search_sequences or cfg.eval.num_sequences
        key = (cfg.data, cfg.eval.seed, size)
        if key not in searches:
            searches[key] = search_set(cfg, size)
        result = _pool_result(cell, options, searches[key])
        pools.append(result)
        print_fn(f"[smoothing] seed {pool_id.seed} M={num_tasks_}: s* = {result['best_smoothing_std']:.4g}; L/D on "
                 f"T_true: smoothed {result[names.TRUE][names.SMOOTHED_DMMSE]['mean']:.4f}, dMMSE "
                 f"{result[names.TRUE][names.DMMSE]['mean']:.4f}, ridge {result[names.TRUE][names.RIDGE]['mean']:.4f}")
    runs = []
    for cell in cells:
        stored = trained.final_record(cell.run_dir)["per_position"]
        pt = {s: {"mean": float(np.mean(stored[names.loss_key(s, names.PT)])),
                  "per_position": stored[names.loss_key(s, names.PT)]} for s in names.EVAL_SETS}
        runs.append({"name": cell.name, "num_tasks": cell.config.data.num_tasks,
                     "batch_size": cell.config.train.batch_size, "steps": cell.config.train.steps,
                     "seed": cell.config.train.seed, names.PT: pt})
    result = {"analysis": "smoothing", "options": dataclasses.asdict(options),
              "loss": "L/D against the noisy targets on the runs' own evaluation sets; s* chosen on a separate "
                      "T_true search set",
              "task_prior": cells[0].config.data.task_prior, "task_scale": cells[0].config.data.task_scale,
              "pools": pools, "runs": runs, "wall_seconds": round(time.perf_counter() - started, 1)}
    write_json(Path(out) if out else Path(workdir) / names.ANALYSIS_DIR / names.SMOOTHING_FILE, result)
    return result
