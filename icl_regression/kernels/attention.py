"""Causal flash attention by JAX's own Pallas (Triton) kernel, `jax.experimental.pallas.ops.gpu.attention.mha`.

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

from icl_regression.kernels import common

MAX_BLOCK = 64


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
