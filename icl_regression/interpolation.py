"""Interpolated tasks (paper Fig 5, SPEC experiment 3): the error along paths between two pool tasks' directions.

For pool tasks w_i, w_j the path w_α = ½(‖w_i‖+‖w_j‖)·(αw_i + (1−α)w_j)/‖αw_i + (1−α)w_j‖, α ∈ [0, 1], keeps the norm
at the pair's mean, so that only the direction moves: it starts and ends in the directions of w_j and w_i, which are
pool tasks themselves only when the two norms are equal (at D = 2 they differ a lot: the committed pairs' endpoints
lie 21-40% of ‖w‖ from their pool tasks on average).
dMMSE, whose prior is the pool, is good at the ends and poor in between; ridge does not care; a model that
memorised its pool behaves like dMMSE, one that learned to regress in context like ridge. Each pair's sequences
(inputs and noise) are reused for every α, so the curves differ only through the task.

All draws come from the evaluation stream `EVAL_TASKS` (never a training draw), keyed by the run's pool and M, so
runs that share a pool (other budgets, the same seed) see the same pairs and sequences.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from icl_regression import names, predictors, rng, trained
from icl_regression.store import write_json

ANALYSIS_INDEX = 1  # this analysis's sub-stream of rng.Stream.EVAL_TASKS


@dataclasses.dataclass(frozen=True)
class InterpolationOptions:
    num_pairs: int = 64  # pairs of distinct pool tasks per run
    num_alphas: int = 21  # α values, evenly spaced in [0, 1]
    sequences_per_pair: int = 32  # sequences per pair, the same for every α

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not (isinstance(value, int) and value >= (2 if field.name == "num_alphas" else 1)):
                raise ValueError(f"{field.name}={value!r}; allowed: an integer >= "
                                 f"{2 if field.name == 'num_alphas' else 1}")


def interpolated_tasks(w_i: jax.Array, w_j: jax.Array, alphas: jax.Array) -> jax.Array:
    """w_α for pairs [P, D] and α [A] → [P, A, D] (the paper's path: direction interpolated, norm the mean)."""
    mix = alphas[None, :, None] * w_i[:, None] + (1.0 - alphas[None, :, None]) * w_j[:, None]
    norm = 0.5 * (jnp.linalg.norm(w_i, axis=-1) + jnp.linalg.norm(w_j, axis=-1))
    return norm[:, None, None] * mix / jnp.linalg.norm(mix, axis=-1, keepdims=True)


def draw_pairs(key: jax.Array, num_tasks: int, num_pairs: int) -> tuple[jax.Array, jax.Array]:
    """`num_pairs` ordered pairs (i, j) of distinct pool indices, uniformly."""
    if num_tasks < 2:
        raise ValueError(f"interpolation needs M >= 2 pool tasks, got M = {num_tasks}")
    first_key, offset_key = jax.random.split(key)
    first = jax.random.randint(first_key, (num_pairs,), 0, num_tasks)
    second = (first + jax.random.randint(offset_key, (num_pairs,), 1, num_tasks)) % num_tasks
    return first, second


def _run_keys(cfg) -> tuple[jax.Array, jax.Array, jax.Array]:
    pid = trained.pool_id_of(cfg)
    base = rng.stream_key(cfg.eval.seed, rng.Stream.EVAL_TASKS, ANALYSIS_INDEX, pid.seed, pid.salt,
                          cfg.data.num_tasks)
    return tuple(jax.random.fold_in(base, i) for i in range(3))


def interpolation_curves(run: trained.TrainedRun, options: InterpolationOptions) -> dict:
    """L/D of the model, dMMSE and ridge at each α, averaged over pairs, sequences and positions (with the
    standard error over pairs), and per position."""
    cfg, data = run.config, run.config.data
    pool = trained.pool_of(cfg)
    pair_key, input_key, noise_key = _run_keys(cfg)
    first, second = draw_pairs(pair_key, data.num_tasks, options.num_pairs)
    alphas = jnp.linspace(0.0, 1.0, options.num_alphas)
    paths = interpolated_tasks(pool[first], pool[second], alphas)  # [P, A, D]
    shape = (options.num_pairs, options.sequences_per_pair, data.context_len)
    xs = jax.random.normal(input_key, (*shape, data.dim))
    noise = data.noise_std * jax.random.normal(noise_key, shape)
    flat_xs = xs.reshape(-1, data.context_len, data.dim)
    curves = {p: {"mean": [], "se": [], "per_position": []} for p in (names.PT, names.DMMSE, names.RIDGE)}
    for a in range(options.num_alphas):
        ys = (jnp.einsum("pskd,pd->psk", xs, paths[:, a]) + noise).reshape(-1, data.context_len)
        preds = {names.PT: trained.model_preds(run, flat_xs, ys),
                 names.DMMSE: predictors.predict(names.DMMSE, data, flat_xs, ys, pool, cfg.eval.batch_size,
                                                 block_size=cfg.eval.dmmse_block),
                 names.RIDGE: predictors.predict(names.RIDGE, data, flat_xs, ys, batch_size=cfg.eval.batch_size)}
        for name, pred in preds.items():
            sq = np.square(np.asarray(pred, np.float64) - np.asarray(ys, np.float64)).reshape(shape) / data.dim
            per_pair = sq.mean(axis=(1, 2))
            curves[name]["mean"].append(float(per_pair.mean()))
            curves[name]["se"].append(float(per_pair.std(ddof=1) / math.sqrt(len(per_pair))) if len(per_pair) > 1
                                      else math.nan)
            curves[name]["per_position"].append(sq.mean(axis=(0, 1)).tolist())
    return {"alphas": np.asarray(alphas).tolist(), "loss": curves,
            "endpoint_norms": {"mean": float(jnp.mean(jnp.linalg.norm(paths[:, 0], axis=-1)))}}


def run_interpolation(workdir: Path, scratch: Path | None = None, num_tasks: Sequence | None = None,
                      batch_sizes: Sequence[int] | None = None, options: InterpolationOptions | None = None,
                      retrain_rtol: float = 0.0, out: Path | None = None,
                      print_fn: Callable[[str], None] = print) -> dict:
    """The interpolation curves of the chosen finished runs (M >= 2; default: every finite M >= 2 at the largest
    batch), written to `<workdir>/analysis/interpolation.json` (or `out`) and returned."""
    options = options or InterpolationOptions()
    cells = trained.sweep_cells(workdir)
    if batch_sizes is None:
        batch_sizes = [max(c.config.train.batch_size for c in cells)]
    chosen = [c for c in trained.select_cells(cells, num_tasks, batch_sizes, finite_only=True)
              if c.config.data.num_tasks >= 2]
    if not chosen:
        raise ValueError("interpolation needs runs with M >= 2 pool tasks; none selected")
    started = time.perf_counter()
    runs = trained.load_trained(workdir, chosen, scratch, retrain_rtol, print_fn)
    rows = []
    for run in runs:
        cfg = run.config
        curves = interpolation_curves(run, options)
        rows.append({"name": run.name, "num_tasks": cfg.data.num_tasks, "batch_size": cfg.train.batch_size,
                     "steps": cfg.train.steps, "seed": cfg.train.seed, **run.describe(),
                     **curves})
        print_fn(f"[interpolation] {run.name}: L/D at α = 0, ½, 1: " + ", ".join(
            f"{name} {c['mean'][0]:.3f}/{c['mean'][len(c['mean']) // 2]:.3f}/{c['mean'][-1]:.3f}"
            for name, c in curves["loss"].items()))
    result = {"analysis": "interpolation", "options": dataclasses.asdict(options),
              "loss": "L/D against the noisy targets, averaged over pairs, sequences and context positions",
              "task_prior": chosen[0].config.data.task_prior, "runs": rows,
              "wall_seconds": round(time.perf_counter() - started, 1)}
    write_json(Path(out) if out else Path(workdir) / names.ANALYSIS_DIR / names.INTERPOLATION_FILE, result)
    return result
