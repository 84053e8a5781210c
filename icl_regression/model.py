"""The paper's GPT-2 style decoder for in-context regression (Flax Linen).

Pre-LayerNorm blocks with causal softmax attention and a 4·d GELU (tanh) MLP, learned absolute position
embeddings over the 2K interleaved tokens, a bias-free linear read-in and read-out; predictions are read at the
x-token positions, so the prediction for y_k sees x_1, y_1, …, x_{k−1}, y_{k−1}, x_k.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from icl_regression.config import ModelConfig
from icl_regression.tasks import tokens

LAYER_NORM_EPS = 1e-5
INIT_STD = 0.02


class CausalSelfAttention(nn.Module):
    d_model: int
    num_heads: int
    resid_std: float
    dtype: jnp.dtype

    @nn.compact
    def __call__(self, h):  # [B, T, d]
        batch, length, _ = h.shape
        head_dim = self.d_model // self.num_heads
        qkv = nn.Dense(3 * self.d_model, dtype=self.dtype, kernel_init=nn.initializers.normal(INIT_STD),
                       name="qkv")(h)
        q, k, v = jnp.split(qkv.reshape(batch, length, 3 * self.num_heads, head_dim), 3, axis=2)
        attended = jax.nn.dot_product_attention(q, k, v, is_causal=True)  # [B, T, H, head_dim]
        return nn.Dense(self.d_model, dtype=self.dtype, kernel_init=nn.initializers.normal(self.resid_std),
                        name="out")(attended.reshape(batch, length, self.d_model))


class Block(nn.Module):
    d_model: int
    num_heads: int
    resid_std: float
    dtype: jnp.dtype

    @nn.compact
    def __call__(self, h):
        normed = nn.LayerNorm(epsilon=LAYER_NORM_EPS, dtype=self.dtype, name="ln_attn")(h)
        h = h + CausalSelfAttention(self.d_model, self.num_heads, self.resid_std, self.dtype, name="attn")(normed)
        normed = nn.LayerNorm(epsilon=LAYER_NORM_EPS, dtype=self.dtype, name="ln_mlp")(h)
        hidden = nn.Dense(4 * self.d_model, dtype=self.dtype, kernel_init=nn.initializers.normal(INIT_STD),
                          name="mlp_in")(normed)
        hidden = nn.gelu(hidden, approximate=True)
        return h + nn.Dense(self.d_model, dtype=self.dtype, kernel_init=nn.initializers.normal(self.resid_std),
                            name="mlp_out")(hidden)


class Transformer(nn.Module):
    """`apply(params, xs [B, K, D], ys [B, K]) → preds [B, K]` (float32 whatever the compute dtype)."""

    config: ModelConfig

    @nn.compact
    def __call__(self, xs, ys):
        cfg = self.config
        dtype = jnp.dtype(cfg.compute_dtype)
        seq = tokens(xs, ys)  # [B, 2K, D+1]
        h = nn.Dense(cfg.d_model, use_bias=False, dtype=dtype, kernel_init=nn.initializers.normal(INIT_STD),
                     name="read_in")(seq)
        positions = self.param("pos_embedding", nn.initializers.normal(INIT_STD), (seq.shape[1], cfg.d_model))
        h = h + positions.astype(dtype)
        resid_std = INIT_STD / math.sqrt(2 * cfg.num_layers)
        for layer in range(cfg.num_layers):
            h = Block(cfg.d_model, cfg.num_heads, resid_std, dtype, name=f"block_{layer}")(h)
        h = nn.LayerNorm(epsilon=LAYER_NORM_EPS, dtype=dtype, name="ln_final")(h)
        out = nn.Dense(1, use_bias=False, dtype=dtype, kernel_init=nn.initializers.normal(INIT_STD),
                       name="read_out")(h[:, ::2])  # x-token positions
        return out[..., 0].astype(jnp.float32)


def count_params(params) -> int:
    return sum(x.size for x in jax.tree.leaves(params))


def flops_per_sequence(config: ModelConfig, context_len: int, dim: int) -> float:
    """Forward-pass FLOPs of one sequence (2 per multiply-add; matmuls and attention scores)."""
    length, width = 2 * context_len, config.d_model
    per_layer = 2 * length * (3 * width * width + width * width + 8 * width * width)  # qkv, out, mlp
    per_layer += 2 * 2 * length * length * width  # scores and weighted values (full square, as computed)
    return config.num_layers * per_layer + 2 * length * (dim + 1) * width + 2 * context_len * width
