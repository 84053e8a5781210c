"""Task pools and sequence sampling: the data of SPEC.md, drawn on device inside jit.

A sequence is K pairs (x_k, y_k = wᵀx_k + ε_k) sharing one task w. Training sequences take w uniformly from a
pool of M tasks (M = 0 means a fresh w per sequence). Tasks come from the task prior of the config: Gaussian
(the paper's) or Laplace coordinates of the same variance.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from icl_regression import rng
from icl_regression.config import TASK_PRIORS

POOL_BLOCK = 1_024  # pool rows are drawn in blocks of this many, so that row i never depends on the pool size
LAPLACE_UNIT_SCALE = 2.0**-0.5  # Laplace(0, b) has variance 2b²: b = 1/√2 gives unit variance


def standard_tasks(key: jax.Array, shape: tuple[int, ...], task_prior: str = "gaussian") -> jax.Array:
    """Task coordinates of unit variance from the task prior (config.TASK_PRIORS): N(0, 1) or Laplace(0, 1/√2)."""
    if task_prior == "gaussian":
        return jax.random.normal(key, shape)
    if task_prior == "laplace":
        return LAPLACE_UNIT_SCALE * jax.random.laplace(key, shape)
    raise ValueError(f"task_prior={task_prior!r}; allowed: {', '.join(map(repr, TASK_PRIORS))}")


def make_pool(seed: int, num_rows: int, dim: int, task_scale: float = 1.0, salt: int = 0,
              task_prior: str = "gaussian") -> jax.Array:
    """Pool of tasks w(i) = τ·(unit-variance draw of the task prior), shape [num_rows, dim].

    Rows come in fixed blocks keyed by their block index, so the first M rows of a larger pool equal the pool of
    size M: pools for different M are nested. A non-zero `salt` gives an independent pool (non-nested sweeps
    use salt = M).
    """
    num_blocks = max(1, -(-num_rows // POOL_BLOCK))
    keys = jax.vmap(lambda b: rng.stream_key(seed, rng.Stream.POOL, salt, b))(jnp.arange(num_blocks))
    blocks = jax.vmap(lambda k: standard_tasks(k, (POOL_BLOCK, dim), task_prior))(keys)
    return task_scale * blocks.reshape(-1, dim)[:num_rows]


def sample_sequences(
    keys: dict[str, jax.Array],
    pool: jax.Array,
    num_tasks,
    batch_size: int,
    context_len: int,
    noise_std: float,
    task_scale: float = 1.0,
    pool_index=None,
    task_prior: str = "gaussian",
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Draws a batch: xs [B, K, D], ys [B, K], ws [B, D].

    `keys` holds one key per stream ("task_index", "task_fresh", "inputs", "noise"). `num_tasks` may be a traced
    integer: rows are taken from the first `num_tasks` rows of `pool`, or fresh tasks from `task_prior` where it is 0.
    `pool` is [M_max, D], or a stack of pools [P, M_max, D] read at `pool_index` (one gather of B rows, never a
    copy of the whole pool).
    """
    dim = pool.shape[-1]
    num_tasks = jnp.asarray(num_tasks, jnp.int32)
    index = jax.random.randint(keys["task_index"], (batch_size,), 0, jnp.maximum(num_tasks, 1))
    rows = pool[index] if pool_index is None else pool[pool_index, index]
    fresh = task_scale * standard_tasks(keys["task_fresh"], (batch_size, dim), task_prior)
    ws = jnp.where(num_tasks > 0, rows, fresh)
    xs = jax.random.normal(keys["inputs"], (batch_size, context_len, dim))
    noise = noise_std * jax.random.normal(keys["noise"], (batch_size, context_len))
    ys = jnp.einsum("bkd,bd->bk", xs, ws) + noise
    return xs, ys, ws


def training_keys(seed, step) -> dict[str, jax.Array]:
    """The per-stream keys of one training step."""
    streams = {"task_index": rng.Stream.TASK_INDEX, "task_fresh": rng.Stream.TASK_FRESH,
               "inputs": rng.Stream.INPUTS, "noise": rng.Stream.NOISE}
    return {name: rng.stream_key(seed, stream, step) for name, stream in streams.items()}


def evaluation_keys(eval_seed: int, stream: rng.Stream, *indices) -> dict[str, jax.Array]:
    """Keys for an evaluation set: one evaluation stream, split into the four draws by a sub-index."""
    names = ("task_index", "task_fresh", "inputs", "noise")
    return {name: rng.stream_key(eval_seed, stream, *indices, i) for i, name in enumerate(names)}


def tokens(xs: jax.Array, ys: jax.Array) -> jax.Array:
    """Interleaves x-tokens (0, x_k) and y-tokens (y_k, 0, …, 0): [B, K, D], [B, K] → [B, 2K, D+1]."""
    batch, context_len, dim = xs.shape
    x_tokens = jnp.concatenate([jnp.zeros((batch, context_len, 1), xs.dtype), xs], axis=-1)
    y_tokens = jnp.concatenate([ys[..., None], jnp.zeros((batch, context_len, dim), xs.dtype)], axis=-1)
    return jnp.stack([x_tokens, y_tokens], axis=2).reshape(batch, 2 * context_len, dim + 1)
