"""Causal attention kernels: `qkv_attention` (`model.attention="fused"`), this project's kernel that reads the
packed qkv projection directly; and `flash_attention` (`model.attention="pallas"`), JAX's own Pallas (Triton) flash
attention, `jax.experimental.pallas.ops.gpu.attention.mha`.

`model.attention="pallas"`: a fused attention that, unlike cuDNN's, compiles ahead of time for an H100 on a CPU
host, so the roofline prediction of fused attention has a real program to read (it moves the same arrays as
cuDNN's: q, k, v, o and the log-sum-exp forward; those plus ∂o → ∂q, ∂k, ∂v backward). It also gives a GPU
session a second fused attention to measure. JAX marks the module deprecated from 0.11 (in favour of tokamax),
hence the import at call time.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from icl_regression.kernels import common

MAX_BLOCK = 64
NUM_WARPS = 4


def _block(length: int) -> int:
    """Largest power of two ≤ MAX_BLOCK dividing the sequence length (the kernel tiles it exactly)."""
    return math.gcd(length, MAX_BLOCK)


def flash_attention(q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
    """Causal softmax attention of [B, T, H, head_dim] queries, keys and values, scaled by 1/√head_dim."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from jax.experimental.pallas.ops.gpu import attention as pallas_attention

    block = _block(q.shape[1])
    sizes = pallas_attention.BlockSizes(block_q=block, block_k=block, block_q_dkv=block, block_kv_dkv=block,
                                        block_q_dq=block, block_kv_dq=block)

    def build(interpret):
        return functools.partial(pallas_attention.mha, segment_ids=None, sm_scale=1.0 / math.sqrt(q.shape[-1]),
                                 causal=True, block_sizes=sizes, interpret=interpret)

    return common.on_platform(build, q, k, v)


# Causal attention read straight from the qkv projection: one program per sequence (T = 2K = 32 tokens fits in
# one tile, so no online softmax), all heads in turn. q, k, v are column blocks of qkv [B, T, 3d] (the model's
# layout: heads of q, then of k, then of v) to which the kernel adds the projection's bias; the output is written
# as [B, T, d], and the backward pass writes ∂qkv in the same layout and per-sequence partial sums of ∂bias. None
# of the split, transpose and concatenate copies that XLA, cuDNN or the flash kernel above need around the
# attention core (../shared/DEVICE.md: 29% of the base model's bytes with them), nor XLA's separate bias add and
# bias-gradient reduction over qkv.
MASKED = -1e30


def _probabilities(q, k, scale):
    length = q.shape[0]
    scores = common.matmul_t(q, k) * scale
    causal = jnp.arange(length)[None, :] <= jnp.arange(length)[:, None]
    scores = jnp.where(causal, scores, MASKED)
    weights = jnp.exp(scores - jnp.max(scores, axis=1, keepdims=True))
    return weights / jnp.sum(weights, axis=1, keepdims=True)


def _head_columns(head: int, head_dim: int, width: int):
    return (pl.ds(head * head_dim, head_dim), pl.ds(width + head * head_dim, head_dim),
            pl.ds(2 * width + head * head_dim, head_dim))


def _load(qkv_ref, bias_ref, cols):
    return (qkv_ref[:, cols].astype(jnp.float32) + bias_ref[cols]).astype(qkv_ref.dtype)


def _qkv_forward_kernel(qkv_ref, bias_ref, out_ref, *, num_heads):
    width = out_ref.shape[-1]
    head_dim = width // num_heads
    for head in range(num_heads):
        q_cols, k_cols, v_cols = _head_columns(head, head_dim, width)
        v = _load(qkv_ref, bias_ref, v_cols)
        probs = _probabilities(_load(qkv_ref, bias_ref, q_cols), _load(qkv_ref, bias_ref, k_cols),
                               1.0 / math.sqrt(head_dim))
        out_ref[:, q_cols] = common.matmul(probs.astype(v.dtype), v).astype(out_ref.dtype)


def _qkv_backward_kernel(qkv_ref, bias_ref, dout_ref, dqkv_ref, dbias_ref, *, num_heads):
    width = dout_ref.shape[-1]
    head_dim = width // num_heads
    scale = 1.0 / math.sqrt(head_dim)
    for head in range(num_heads):
        q_cols, k_cols, v_cols = _head_columns(head, head_dim, width)
        q, k, v = (_load(qkv_ref, bias_ref, cols) for cols in (q_cols, k_cols, v_cols))
        dout = dout_ref[:, q_cols]
        probs = _probabilities(q, k, scale)
        dprobs = common.matmul_t(dout, v)
        dscores = (probs * (dprobs - jnp.sum(probs * dprobs, axis=1, keepdims=True))).astype(q.dtype)
        grads = ((q_cols, common.matmul(dscores, k) * scale), (k_cols, common.t_matmul(dscores, q) * scale),
                 (v_cols, common.t_matmul(probs.astype(v.dtype), dout)))
        for cols, grad in grads:
            dqkv_ref[:, cols] = grad.astype(dqkv_ref.dtype)
            dbias_ref[cols] = jnp.sum(grad, axis=0)


def _per_sequence(shape):
    return pl.BlockSpec((None, *shape[1:]), lambda b: (b, 0, 0))


def _vector(width):
    return pl.BlockSpec((width,), lambda b: (0,))


def _qkv_forward(qkv, bias, num_heads):
    batch, length, width3 = qkv.shape
    out_shape = jax.ShapeDtypeStruct((batch, length, width3 // 3), qkv.dtype)

    def build(interpret):
        return pl.pallas_call(
            functools.partial(_qkv_forward_kernel, num_heads=num_heads), out_shape=out_shape, grid=(batch,),
            in_specs=[_per_sequence(qkv.shape), _vector(width3)], out_specs=_per_sequence(out_shape.shape),
            compiler_params=common.triton_params(NUM_WARPS), interpret=interpret, name="qkv_attention_fwd")

    return common.on_platform(build, qkv, bias)


def _qkv_backward(qkv, bias, dout, num_heads):
    batch, _, width3 = qkv.shape

    def build(interpret):
        return pl.pallas_call(
            functools.partial(_qkv_backward_kernel, num_heads=num_heads),
            out_shape=(jax.ShapeDtypeStruct(qkv.shape, qkv.dtype),
                       jax.ShapeDtypeStruct((batch, width3), jnp.float32)), grid=(batch,),
            in_specs=[_per_sequence(qkv.shape), _vector(width3), _per_sequence(dout.shape)],
            out_specs=(_per_sequence(qkv.shape), pl.BlockSpec((None, width3), lambda b: (b, 0))),
            compiler_params=common.triton_params(NUM_WARPS), interpret=interpret, name="qkv_attention_bwd")

    return common.on_platform(build, qkv, bias, dout)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def qkv_attention(qkv: jax.Array, bias: jax.Array, num_heads: int) -> jax.Array:
    """Causal softmax attention [B, T, d] of the heads packed in qkv + bias ([B, T, 3d] + [3d]: q heads, k heads,
    v heads), each scaled by 1/√head_dim: `jax.nn.dot_product_attention` on the split and reshaped q, k, v."""
    return _qkv_forward(qkv, bias.astype(jnp.float32), num_heads)


def _qkv_attention_fwd(qkv, bias, num_heads):
    return qkv_attention(qkv, bias, num_heads), (qkv, bias)


def _qkv_attention_bwd(num_heads, residuals, dout):
    qkv, bias = residuals
    dqkv, dbias = _qkv_backward(qkv, bias.astype(jnp.float32), dout.astype(qkv.dtype), num_heads)
    return dqkv, dbias.sum(axis=0).astype(bias.dtype)


qkv_attention.defvjp(_qkv_attention_fwd, _qkv_attention_bwd)
