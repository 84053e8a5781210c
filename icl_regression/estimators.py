"""Exact Bayes and least-squares estimators, for every context prefix at once.

All map xs [B, K, D], ys [B, K] → preds [B, K], where preds[:, k] uses only the pairs 0..k−1 (the transformer's
signature). No Python loop over positions: prefix statistics are exclusive cumulative sums along K.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def _exclusive_cumsum(values: jax.Array, axis: int = 1) -> jax.Array:
    """Sum over the strictly earlier positions along `axis` (shifted, not cumsum − value, which cancels)."""
    total = jnp.cumsum(values, axis=axis)
    length = values.shape[axis]
    earlier = jax.lax.slice_in_dim(total, 0, length - 1, axis=axis)
    zeros = jnp.zeros_like(jax.lax.slice_in_dim(total, 0, 1, axis=axis))
    return jnp.concatenate([zeros, earlier], axis=axis)


@jax.jit
def ridge_preds(xs: jax.Array, ys: jax.Array, lam) -> jax.Array:
    """Ridge regression on each prefix: ŵ_k = (XᵀX + λI)⁻¹Xᵀy over pairs < k; ŷ_k = x_kᵀŵ_k (ŷ_0 = 0).

    With λ = σ²/τ² this is the posterior mean under the Gaussian task prior N(0, τ²I).
    """
    dim = xs.shape[-1]
    gram = _exclusive_cumsum(jnp.einsum("bki,bkj->bkij", xs, xs))  # [B, K, D, D]
    moment = _exclusive_cumsum(xs * ys[..., None])  # [B, K, D]
    weights = jnp.linalg.solve(gram + lam * jnp.eye(dim, dtype=xs.dtype), moment[..., None])[..., 0]
    return jnp.einsum("bkd,bkd->bk", xs, weights)


@jax.jit
def ols_preds(xs: jax.Array, ys: jax.Array) -> jax.Array:
    """Minimum-norm least squares on each prefix (ŷ_0 = 0): ŵ_k = X⁺_{<k} y_{<k}.

    Uses the pseudo-inverse of the prefix design matrix (later rows zeroed), not of the Gram matrix, so that
    the conditioning is that of X rather than XᵀX.
    """
    context_len = xs.shape[1]
    earlier = jnp.tril(jnp.ones((context_len, context_len), xs.dtype), k=-1)  # [k, j]: j < k
    prefix_xs = earlier[None, :, :, None] * xs[:, None, :, :]  # [B, K(prefix), K(pair), D]
    prefix_ys = earlier[None] * ys[:, None, :]  # [B, K, K]
    weights = jnp.einsum("bkdj,bkj->bkd", jnp.linalg.pinv(prefix_xs), prefix_ys)
    return jnp.einsum("bkd,bkd->bk", xs, weights)


@functools.partial(jax.jit, static_argnames=("block_size",))
def dmmse_preds(xs: jax.Array, ys: jax.Array, pool: jax.Array, noise_std, block_size: int = 1024) -> jax.Array:
    """Posterior mean under the uniform prior on `pool` [M, D] with Gaussian noise of std σ.

    ŷ_k = Σ_i softmax_i(−‖y_{<k} − X_{<k} w(i)‖² / 2σ²) x_kᵀw(i); position 0 predicts with the pool mean.
    Streams over blocks of `block_size` tasks with a running log-sum-exp, so memory is O(B·K·block_size)
    whatever M is; the result equals the unblocked one (`block_size >= M`).
    """
    num_tasks, dim = pool.shape
    block_size = min(block_size, num_tasks)
    num_blocks = -(-num_tasks // block_size)
    padded = jnp.zeros((num_blocks * block_size, dim), pool.dtype).at[:num_tasks].set(pool)
    valid = jnp.arange(num_blocks * block_size) < num_tasks
    blocks = (padded.reshape(num_blocks, block_size, dim), valid.reshape(num_blocks, block_size))
    batch, context_len = ys.shape
    inv_two_var = 1.0 / (2.0 * jnp.square(noise_std))

    def accumulate(carry, block):
        running_max, total, numerator = carry
        tasks, mask = block
        task_preds = jnp.einsum("bkd,md->bkm", xs, tasks)  # x_kᵀ w(i), [B, K, block]
        sq_err = jnp.square(ys[..., None] - task_preds)
        log_w = -inv_two_var * _exclusive_cumsum(sq_err)
        log_w = jnp.where(mask, log_w, -jnp.inf)
        new_max = jnp.maximum(running_max, log_w.max(axis=-1))
        rescale = jnp.exp(running_max - new_max)
        probs = jnp.exp(log_w - new_max[..., None])
        total = total * rescale + probs.sum(axis=-1)
        numerator = numerator * rescale + (probs * task_preds).sum(axis=-1)
        return (new_max, total, numerator), None

    init = (jnp.full((batch, context_len), -jnp.inf, xs.dtype), jnp.zeros((batch, context_len), xs.dtype),
            jnp.zeros((batch, context_len), xs.dtype))
    (_, total, numerator), _ = jax.lax.scan(accumulate, init, blocks)
    return numerator / total
