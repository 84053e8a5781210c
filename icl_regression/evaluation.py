"""Fixed evaluation sets, estimator predictions computed once per pool, and the metrics of SPEC.md.

Evaluation draws use the evaluation streams of `rng` (disjoint from training). The T_true set depends only on the
evaluation seed, so every model of every sweep sharing that seed sees the same sequences; a T_pretrain set depends
on (evaluation seed, pool, M), so every model sharing a pool sees the same sequences.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp

from icl_regression import estimators, names, rng, tasks
from icl_regression.config import INFINITE_TASKS, DataConfig, EvalConfig
from icl_regression.model import evaluation_model


@dataclasses.dataclass(frozen=True)
class PoolId:
    """Which pool a model trains on: the seed's pool (nested), or an independent pool per M (salt = M)."""

    seed: int
    salt: int = 0


@dataclasses.dataclass
class EvalSet:
    xs: jax.Array  # [N, K, D]
    ys: jax.Array  # [N, K]
    ridge: jax.Array  # [N, K]
    dmmse: jax.Array  # [N, K]


class EvalBank:
    """Builds evaluation sets and estimator predictions on demand and keeps them for reuse."""

    def __init__(self, data: DataConfig, eval_cfg: EvalConfig):
        self.data, self.eval_cfg = data, eval_cfg
        self._true_xs_ys = None
        self._true_ridge = None
        self._sets: dict = {}

    def _draw(self, stream: rng.Stream, pool, num_tasks: int, *indices):
        keys = tasks.evaluation_keys(self.eval_cfg.seed, stream, *indices)
        xs, ys, _ = tasks.sample_sequences(keys, pool, num_tasks, self.eval_cfg.num_sequences,
                                           self.data.context_len, self.data.noise_std, self.data.task_scale,
                                           task_prior=self.data.task_prior)
        return xs, ys

    def _ridge(self, xs, ys):
        return _batched(functools.partial(estimators.ridge_preds, lam=self.data.ridge_lambda),
                        xs, ys, self.eval_cfg.batch_size)

    def _dmmse(self, xs, ys, pool):
        fn = functools.partial(estimators.dmmse_preds, pool=pool, noise_std=self.data.noise_std,
                               block_size=self.eval_cfg.dmmse_block)
        return _batched(fn, xs, ys, self.eval_cfg.batch_size)

    def true_set(self) -> tuple[jax.Array, jax.Array, jax.Array]:
        """(xs, ys, ridge preds) of T_true."""
        if self._true_xs_ys is None:
            dummy_pool = jnp.zeros((1, self.data.dim))
            self._true_xs_ys = self._draw(rng.Stream.EVAL_TRUE, dummy_pool, INFINITE_TASKS)
            self._true_ridge = self._ridge(*self._true_xs_ys)
        return (*self._true_xs_ys, self._true_ridge)

    def sets_for(self, pool_id: PoolId, num_tasks: int) -> dict[str, EvalSet]:
        """Both evaluation sets, with ridge and dMMSE predictions, for models trained on (pool_id, M)."""
        cache_key = (pool_id, num_tasks)
        if cache_key not in self._sets:
            true_xs, true_ys, true_ridge = self.true_set()
            if num_tasks == INFINITE_TASKS:  # T_pretrain = T_true, and the Bayes estimator is ridge
                true = EvalSet(true_xs, true_ys, true_ridge, true_ridge)
                self._sets[cache_key] = {names.PRETRAIN: true, names.TRUE: true}
            else:
                pool = tasks.make_pool(pool_id.seed, num_tasks, self.data.dim, self.data.task_scale,
                                       pool_id.salt, self.data.task_prior)
                pre_xs, pre_ys = self._draw(rng.Stream.EVAL_PRETRAIN, pool, num_tasks, pool_id.seed,
                                            pool_id.salt, num_tasks)
                self._sets[cache_key] = {
                    names.PRETRAIN: EvalSet(pre_xs, pre_ys, self._ridge(pre_xs, pre_ys),
                                            self._dmmse(pre_xs, pre_ys, pool)),
                    names.TRUE: EvalSet(true_xs, true_ys, true_ridge, self._dmmse(true_xs, true_ys, pool)),
                }
        return self._sets[cache_key]


def _batched(fn: Callable, xs: jax.Array, ys: jax.Array, batch_size: int) -> jax.Array:
    """fn over the sequences in chunks of `batch_size`, bounding peak memory."""
    num = xs.shape[0]
    size = min(batch_size, num)
    outs = [fn(xs[i:i + size], ys[i:i + size]) for i in range(0, num, size)]
    return jnp.concatenate(outs, axis=0)


def predictor_metrics(preds: dict[str, jax.Array], ys: jax.Array, eval_set: str) -> dict[str, jax.Array]:
    """Per-position metrics [K] of one evaluation set: L/D of each predictor, Δ of each pair (both / D)."""
    dim_scale = 1.0 / preds["_dim"]
    out = {}
    for predictor in names.PREDICTORS:
        out[names.loss_key(eval_set, predictor)] = dim_scale * jnp.mean(jnp.square(preds[predictor] - ys), axis=0)
    for pair, f, g in names.PAIRS:
        out[names.delta_key(eval_set, pair)] = dim_scale * jnp.mean(jnp.square(preds[f] - preds[g]), axis=0)
    return out


def mixture_terms(preds: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
    """Per sequence and position [N, K]: (PT − dMMSE)·(ridge − dMMSE) and (ridge − dMMSE)².

    Their means over sequences are all the least-squares mixture weight needs (`mixture_weight`), so bootstrap
    replicates of the weight are weighted means of these two arrays.
    """
    spread = preds[names.RIDGE] - preds[names.DMMSE]
    return (preds[names.PT] - preds[names.DMMSE]) * spread, jnp.square(spread)


def mixture_weight(cross: jax.Array, spread: jax.Array) -> jax.Array:
    """a = argmin over [0, 1] of E[(PT − a·ridge − (1 − a)·dMMSE)²] = clip(E[cross] / E[spread]) (a 1-d quadratic:
    the constrained minimum is the clipped unconstrained one). NaN where ridge = dMMSE on every sequence (M = ∞)."""
    ok = spread > 0
    return jnp.where(ok, jnp.clip(cross / jnp.where(ok, spread, 1.0), 0.0, 1.0), jnp.nan)


def mixture_metrics(preds: dict[str, jax.Array], eval_set: str) -> dict[str, jax.Array]:
    """Per-position [K]: the model as the best mixture a·ridge + (1 − a)·dMMSE (least squares over the evaluation
    sequences, one a per position), and the residual that neither strategy explains, scaled like Δ (1/D).

    SPEC's "below the threshold the model tracks dMMSE, above it ridge" as one number per position: a = 1 is ridge,
    a = 0 is dMMSE. The residual says how much of the model is neither; compare it with min(Δ_PT,Ridge, Δ_PT,dMMSE),
    which is the residual at a ∈ {0, 1}.
    """
    cross, spread = mixture_terms(preds)
    weight = mixture_weight(jnp.mean(cross, axis=0), jnp.mean(spread, axis=0))
    deviation = preds[names.PT] - preds[names.DMMSE] - weight * (preds[names.RIDGE] - preds[names.DMMSE])
    return {names.mixture_weight_key(eval_set): weight,
            names.mixture_residual_key(eval_set): jnp.mean(jnp.square(deviation), axis=0) / preds["_dim"]}


def dynamics_replicates(preds: dict[str, jax.Array], ys: jax.Array, resample_weights: jax.Array) -> dict:
    """[R] bootstrap replicates over evaluation sequences of each `names.DYNAMICS_BOOTSTRAP_KEYS` metric (T_true).

    `resample_weights` [R, N]: how often each sequence occurs in each resample, over N (`resampling_weights`).
    Each replicate is the metric recomputed on its resample, the weight a included (clipped per position, then
    averaged), so a replicate curve over training is the whole curve on one resample of the sequences.
    """
    dim_scale = 1.0 / preds["_dim"]
    per_seq_delta = dim_scale * jnp.mean(jnp.square(preds[names.PT] - preds[names.RIDGE]), axis=1)
    per_seq_loss = dim_scale * jnp.mean(jnp.square(preds[names.PT] - ys), axis=1)
    cross, spread = mixture_terms(preds)
    weight = mixture_weight(resample_weights @ cross, resample_weights @ spread)  # [R, K]
    return {names.THRESHOLD_METRIC: resample_weights @ per_seq_delta,
            names.loss_key(names.TRUE, names.PT): resample_weights @ per_seq_loss,
            names.mixture_weight_key(names.TRUE): jnp.mean(weight, axis=1)}


def per_sequence(preds: dict[str, jax.Array], key: str) -> jax.Array:
    """[N] values of a Δ metric averaged over positions for each sequence (for bootstrapping)."""
    _, kind, pair = key.split("/")
    f, g = next((f, g) for name, f, g in names.PAIRS if name == pair)
    return jnp.mean(jnp.square(preds[f] - preds[g]), axis=1) / preds["_dim"]


def bootstrap_indices(eval_cfg: EvalConfig) -> jax.Array:
    """[R, N] resampling indices, the same for every model (so bootstrap replicates align across a sweep)."""
    key = rng.stream_key(eval_cfg.seed, rng.Stream.BOOTSTRAP)
    return jax.random.randint(key, (eval_cfg.num_bootstrap, eval_cfg.num_sequences), 0, eval_cfg.num_sequences)


def dynamics_bootstrap_indices(eval_cfg: EvalConfig) -> jax.Array | None:
    """[R, N] resampling indices for the replicates stored at every evaluation (None when R = 0); the same for every
    model and evaluation, so replicate r of a curve is that curve on one resample of the sequences throughout.

    What is stored, and why that is enough: the t* intervals (icl_regression/dynamics.py) need the evaluation-
    sequence noise of whole curves, and that noise is correlated across evaluations (every evaluation reuses the
    same sequences), so per-evaluation standard errors would misstate it; replicate curves keep the correlation.
    Only the three metrics t* is read from are resampled (`names.DYNAMICS_BOOTSTRAP_KEYS`, position means), and
    R = 32 (`eval.num_bootstrap_per_eval`): each t* bootstrap replicate draws one of them, and 32 estimate the
    evaluation part of a t* interval's width to about 1/√(2·31) ≈ 13%, a part that is small next to the seed spread
    anyway. Cost: about 1 KB per evaluation and run, so a paper-scale sweep (44 runs × 100 evaluations) stores
    about 5 MB of replicates, where 200 replicates of all 20 metrics at all 16 positions would be over 3 GB.
    """
    if not eval_cfg.num_bootstrap_per_eval:
        return None
    key = rng.stream_key(eval_cfg.seed, rng.Stream.BOOTSTRAP, 1)  # index 1: apart from the final replicates'
    shape = (eval_cfg.num_bootstrap_per_eval, eval_cfg.num_sequences)
    return jax.random.randint(key, shape, 0, eval_cfg.num_sequences)


def resampling_weights(indices: jax.Array, num_sequences: int) -> jax.Array:
    """[R, N]: how often each sequence occurs in each resample, divided by N (a resample's mean is a dot product)."""
    rows = jnp.arange(indices.shape[0])[:, None]
    return jnp.zeros((indices.shape[0], num_sequences)).at[rows, indices].add(1.0 / num_sequences)


def make_group_evaluator(model, eval_cfg: EvalConfig, strategy: str, with_bootstrap: bool, batch_sharding=None):
    """Jitted `(params [E,…], per_member, shared, boot_idx, dynamics_idx=None) → (metrics {key: [E, K]},
    bootstrap {key: [E, R_final]}, dynamics replicates {key: [E, R]})`.

    `per_member` and `shared` come from `stack_member_sets`; `boot_idx` from `bootstrap_indices` (used when
    `with_bootstrap`), `dynamics_idx` from `dynamics_bootstrap_indices` (None: no per-evaluation replicates). The model is evaluated on
    the plain float32 path whatever path it trains on (`model.evaluation_model`). `batch_sharding` (optional,
    `parallel.Placement.batch_sharding`, as in training) splits each chunk of `eval_cfg.batch_size` sequences over
    the devices of the 'data' axis, which otherwise would all evaluate every member on every sequence.
    """
    model = evaluation_model(model)

    def member_metrics(params, member_arrays, shared, boot_idx, dynamics_weights):
        true_xs, true_ys, true_ridge = shared
        sets = {names.PRETRAIN: member_arrays[names.PRETRAIN],
                names.TRUE: (true_xs, true_ys, true_ridge, member_arrays[names.TRUE])}
        out, boot, dyn = {}, {}, {}
        for eval_set, (xs, ys, ridge, dmmse) in sets.items():
            pt = _batched_apply(model, params, xs, ys, eval_cfg.batch_size, batch_sharding)
            preds = {names.PT: pt, names.RIDGE: ridge, names.DMMSE: dmmse, "_dim": xs.shape[-1]}
            out.update(predictor_metrics(preds, ys, eval_set))
            out.update(mixture_metrics(preds, eval_set))
            for key in names.BOOTSTRAP_KEYS:
                if with_bootstrap and key.startswith(eval_set + "/"):
                    boot[key] = per_sequence(preds, key)[boot_idx].mean(axis=1)
            if eval_set == names.TRUE and dynamics_weights is not None:
                dyn = dynamics_replicates(preds, ys, dynamics_weights)
        return out, boot, dyn

    def evaluate(params, per_member, shared, boot_idx, dynamics_idx=None):
        weights = None if dynamics_idx is None else resampling_weights(dynamics_idx, eval_cfg.num_sequences)
        if strategy == "vmap":
            return jax.vmap(member_metrics, in_axes=(0, 0, None, None, None))(params, per_member, shared, boot_idx,
                                                                            weights)
        return jax.lax.map(lambda a: member_metrics(a[0], a[1], shared, boot_idx, weights), (params, per_member))

    return jax.jit(evaluate)


def _batched_apply(model, params, xs, ys, batch_size: int, batch_sharding=None) -> jax.Array:
    num, size = xs.shape[0], min(batch_size, xs.shape[0])
    chunks = (xs.reshape(num // size, size, *xs.shape[1:]), ys.reshape(num // size, size, *ys.shape[1:]))

    def apply(chunk):
        if batch_sharding is not None:
            chunk = tuple(jax.lax.with_sharding_constraint(a, batch_sharding(a.ndim)) for a in chunk)
        return model.apply(params, *chunk)

    return jax.lax.map(apply, chunks).reshape(num, -1)


def stack_member_sets(sets: list[dict[str, EvalSet]]) -> tuple[dict, tuple]:
    """Splits members' evaluation sets into arrays stacked per member and arrays shared by all.

    T_true xs, ys and ridge predictions are the same for every model, so they are passed once; T_pretrain sets
    and T_true dMMSE predictions depend on the pool and are stacked [E, …].
    """
    pretrain = tuple(jnp.stack([getattr(s[names.PRETRAIN], field) for s in sets])
                     for field in ("xs", "ys", "ridge", "dmmse"))
    per_member = {names.PRETRAIN: pretrain, names.TRUE: jnp.stack([s[names.TRUE].dmmse for s in sets])}
    true = sets[0][names.TRUE]
    return per_member, (true.xs, true.ys, true.ridge)
