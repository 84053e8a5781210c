"""The paper's GPT-2 style decoder for in-context regression (Flax Linen).

Pre-LayerNorm blocks with causal softmax attention and a 4·d GELU (tanh) MLP, learned absolute position
embeddings over the 2K interleaved tokens, a bias-free linear read-in and read-out; predictions are read at the
x-token positions, so the prediction for y_k sees x_1, y_1, …, x_{k−1}, y_{k−1}, x_k.

The config picks how it computes (the fast training path, experiments/PERFORMANCE.md): bfloat16 compute with
float32 parameters, fused attention (cuDNN's, JAX's Pallas flash kernel, or this project's kernel reading the packed
qkv), and Pallas kernels for LayerNorm and for the LayerNorm → MLP → residual half of each block
(icl_regression.kernels). The plain float32 XLA path is the default, and evaluation always uses it.
"""

from __future__ import annotations

import logging
import math
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from icl_regression.config import ModelConfig
from icl_regression.kernels import attention as kernels_attention
from icl_regression.kernels import layer_norm as kernels_layer_norm
from icl_regression.kernels import mlp as kernels_mlp
from icl_regression.kernels.common import LAYER_NORM_EPS
from icl_regression.tasks import tokens

log = logging.getLogger(__name__)

INIT_STD = 0.02


class CausalSelfAttention(nn.Module):
    d_model: int
    num_heads: int
    resid_std: float
    dtype: jnp.dtype
    implementation: str = "xla"  # ModelConfig.attention: "xla", "cudnn", "pallas" or "fused"

    @nn.compact
    def __call__(self, h):  # [B, T, d]
        batch, length, _ = h.shape
        head_dim = self.d_model // self.num_heads
        if self.implementation == "fused":  # the kernel adds the bias and reads the packed heads of h·W
            kernel, bias = _DenseParams(3 * self.d_model, nn.initializers.normal(INIT_STD), name="qkv")(self.d_model)
            with jax.named_scope("qkv"):  # op names as the Dense's (the roofline's parts read them)
                qkv = jnp.dot(h, kernel.astype(self.dtype))
            attended = kernels_attention.qkv_attention(qkv, bias, self.num_heads)
        else:
            qkv = nn.Dense(3 * self.d_model, dtype=self.dtype, kernel_init=nn.initializers.normal(INIT_STD),
                           name="qkv")(h)
            q, k, v = jnp.split(qkv.reshape(batch, length, 3 * self.num_heads, head_dim), 3, axis=2)
            attended = causal_attention(q, k, v, self.implementation)  # [B, T, H, head_dim]
        return nn.Dense(self.d_model, dtype=self.dtype, kernel_init=nn.initializers.normal(self.resid_std),
                        name="out")(attended.reshape(batch, length, self.d_model))


class _DenseParams(nn.Module):
    """An nn.Dense's parameters (same names, shapes, initialisers and random streams) for a kernel that applies
    them itself: a model on a fused path initialises and checkpoints exactly as one on the plain path."""

    features: int
    kernel_init: Callable

    @nn.compact
    def __call__(self, in_features: int):
        kernel = self.param("kernel", self.kernel_init, (in_features, self.features), jnp.float32)
        return kernel, self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)


class _LayerNormParams(nn.Module):
    """An nn.LayerNorm's parameters (scale 1, bias 0), for a kernel that applies them itself."""

    @nn.compact
    def __call__(self, width: int):
        scale = self.param("scale", nn.initializers.ones_init(), (width,), jnp.float32)
        return scale, self.param("bias", nn.initializers.zeros_init(), (width,), jnp.float32)


def layer_norm(config: ModelConfig, name: str, h: jax.Array) -> jax.Array:
    """LayerNorm over the last axis, by XLA or by the fused kernel (`config.layer_norm`); call inside a module."""
    if config.layer_norm == "fused":
        scale, bias = _LayerNormParams(name=name)(h.shape[-1])
        return kernels_layer_norm.layer_norm(h, scale, bias)
    return nn.LayerNorm(epsilon=LAYER_NORM_EPS, dtype=jnp.dtype(config.compute_dtype), name=name)(h)


class Block(nn.Module):
    config: ModelConfig
    resid_std: float

    @nn.compact
    def __call__(self, h):
        cfg, width = self.config, self.config.d_model
        dtype = jnp.dtype(cfg.compute_dtype)
        normed = layer_norm(cfg, "ln_attn", h)
        h = h + CausalSelfAttention(width, cfg.num_heads, self.resid_std, dtype, cfg.attention, name="attn")(normed)
        if cfg.mlp == "fused":
            ln_scale, ln_bias = _LayerNormParams(name="ln_mlp")(width)
            w1, b1 = _DenseParams(4 * width, nn.initializers.normal(INIT_STD), name="mlp_in")(width)
            w2, b2 = _DenseParams(width, nn.initializers.normal(self.resid_std), name="mlp_out")(4 * width)
            return kernels_mlp.mlp_block(h, ln_scale, ln_bias, w1.astype(dtype), b1, w2.astype(dtype), b2)
        normed = layer_norm(cfg, "ln_mlp", h)
        hidden = nn.Dense(4 * width, dtype=dtype, kernel_init=nn.initializers.normal(INIT_STD), name="mlp_in")(normed)
        hidden = nn.gelu(hidden, approximate=True)
        return h + nn.Dense(width, dtype=dtype, kernel_init=nn.initializers.normal(self.resid_std),
                            name="mlp_out")(hidden)


class Transformer(nn.Module):
    """`apply(params, xs [B, K, D], ys [B, K]) → preds [B, K]` (float32 whatever the compute dtype).

    The fast-path settings of the config (`compute_dtype`, `attention`, `mlp`, `layer_norm`) change how the
    model computes, never its parameters: every path initialises the same float32 parameters under the same names.
    """

    config: ModelConfig

    @nn.compact
    def __call__(self, xs, ys):
        cfg = self.config
        _log_fast_path(cfg)
        dtype = jnp.dtype(cfg.compute_dtype)
        seq = tokens(xs, ys)  # [B, 2K, D+1]
        h = nn.Dense(cfg.d_model, use_bias=False, dtype=dtype, kernel_init=nn.initializers.normal(INIT_STD),
                     name="read_in")(seq)
        positions = self.param("pos_embedding", nn.initializers.normal(INIT_STD), (seq.shape[1], cfg.d_model))
        h = h + positions.astype(dtype)
        resid_std = INIT_STD / math.sqrt(2 * cfg.num_layers)
        for layer in range(cfg.num_layers):
            h = Block(cfg, resid_std, name=f"block_{layer}")(h)
        h = layer_norm(cfg, "ln_final", h)
        out = nn.Dense(1, use_bias=False, dtype=dtype, kernel_init=nn.initializers.normal(INIT_STD),
                       name="read_out")(h[:, ::2])  # x-token positions
        return out[..., 0].astype(jnp.float32)


def evaluation_model(model: Transformer) -> Transformer:
    """The same model on the plain float32 XLA path (same parameters): evaluation never measures Δ, which is small
    near the threshold, through bfloat16 or through the fused kernels, whatever the training path."""
    return Transformer(model.config.for_evaluation())


def causal_attention(q, k, v, implementation: str) -> jax.Array:
    """Causal softmax attention of [B, T, H, head_dim] queries, keys and values.

    `implementation="cudnn"` asks for cuDNN's fused attention where the program is traced for a CUDA device and
    cuDNN accepts the inputs (bfloat16 or float16, a supported head size); anywhere else it falls back to XLA's
    and logs one line saying why. `implementation="pallas"` runs JAX's Pallas flash-attention kernel.
    """
    if implementation == "pallas":
        return kernels_attention.flash_attention(q, k, v)
    if implementation == "cudnn":
        reason = None
        if jax.default_backend() != "gpu":
            reason = f"the default backend is {jax.default_backend()!r}"
        else:
            try:
                return jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation="cudnn")
            except Exception as e:  # cuDNN missing, too old, or refusing this dtype or shape
                reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        _log_once(f"model.attention='cudnn' unavailable ({reason}); using XLA attention")
    return jax.nn.dot_product_attention(q, k, v, is_causal=True)


_LOGGED: set[str] = set()


def _log_once(message: str) -> None:
    if message not in _LOGGED:
        _LOGGED.add(message)
        log.warning(message)


def _log_fast_path(cfg: ModelConfig) -> None:
    pallas = [f"model.{name}={getattr(cfg, name)!r}" for name in ("attention", "mlp", "layer_norm")
              if getattr(cfg, name) in ("pallas", "fused")]
    if pallas and jax.default_backend() != "gpu":
        _log_once(f"{', '.join(pallas)} on a {jax.default_backend()} host: programs run here use Pallas interpret "
                  "mode (correct but slow; meant for tests); programs lowered for CUDA get the Triton kernels")


def count_params(params) -> int:
    return sum(x.size for x in jax.tree.leaves(params))


def flops_per_sequence(config: ModelConfig, context_len: int, dim: int) -> float:
    """Forward-pass FLOPs of one sequence (2 per multiply-add; matmuls and attention scores)."""
    length, width = 2 * context_len, config.d_model
    per_layer = 2 * length * (3 * width * width + width * width + 8 * width * width)  # qkv, out, mlp
    per_layer += 2 * 2 * length * length * width  # scores and weighted values (full square, as computed)
    return config.num_layers * per_layer + 2 * length * (dim + 1) * width + 2 * context_len * width
