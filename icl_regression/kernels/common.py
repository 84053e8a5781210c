"""What the Pallas kernels share: how a kernel is lowered on each platform, row padding and tile choices.

Every kernel is one `pl.pallas_call` built by a function of `interpret`; `on_platform` stages both versions with
`jax.lax.platform_dependent`, so the choice is made when the program is lowered for its device, not from the
host's default backend: a program lowered for CUDA (on a GPU, or ahead of time for an H100 on a CPU host) gets
the Triton kernel, any other platform the same kernel in Pallas interpret mode (correct but slow: for tests).
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
from jax.experimental.pallas import triton as pl_triton

LAYER_NORM_EPS = 1e-5  # the model's LayerNorm ε (every path uses this one)
GELU_C = math.sqrt(2.0 / math.pi)
GELU_A = 0.044715


def on_platform(build: Callable[[bool], Callable], *args):
    """`build(interpret)(*args)`: the Triton kernel where the program runs on CUDA, interpret mode elsewhere."""
    return jax.lax.platform_dependent(*args, cuda=build(False), default=build(True))


def triton_params(num_warps: int, num_stages: int = 2) -> pl_triton.CompilerParams:
    """Compiler parameters that select the Triton lowering (jax 0.10 otherwise picks Mosaic GPU)."""
    return pl_triton.CompilerParams(num_warps=num_warps, num_stages=num_stages)


def is_power_of_two(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


def row_block(num_rows: int, width: int) -> int:
    """Rows per tile: 64 for widths up to 128, 32 above (a tile and its float32 accumulator live in registers),
    fewer for tiny inputs (tests)."""
    limit = 64 if width <= 128 else 32
    return min(limit, max(16, 1 << (num_rows - 1).bit_length()))


def pad_rows(x: jax.Array, multiple: int) -> jax.Array:
    """`x` [N, d] with zero rows appended up to a multiple of `multiple` (a no-op for the training shapes)."""
    extra = -x.shape[0] % multiple
    return x if extra == 0 else jnp.pad(x, ((0, extra), (0, 0)))


def normalize(x_f32: jax.Array):
    """(x̂, rstd) of LayerNorm over the last axis, in float32 (two-pass variance)."""
    mean = jnp.mean(x_f32, axis=-1, keepdims=True)
    centred = x_f32 - mean
    rstd = jax.lax.rsqrt(jnp.mean(centred * centred, axis=-1, keepdims=True) + LAYER_NORM_EPS)
    return centred * rstd, rstd


def layer_norm_input_grad(dxn: jax.Array, xhat: jax.Array, rstd: jax.Array, scale: jax.Array) -> jax.Array:
    """∂L/∂x of y = x̂·scale + bias given ∂L/∂y = dxn (all float32, rows on axis 0)."""
    g = dxn * scale
    return rstd * (g - jnp.mean(g, axis=-1, keepdims=True) - xhat * jnp.mean(g * xhat, axis=-1, keepdims=True))


def gelu_tanh(pre: jax.Array) -> jax.Array:
    return 0.5 * pre * (1.0 + jnp.tanh(GELU_C * (pre + GELU_A * pre * pre * pre)))


def gelu_tanh_and_grad(pre: jax.Array) -> tuple[jax.Array, jax.Array]:
    """GELU (tanh approximation, as `jax.nn.gelu(approximate=True)`) and its derivative."""
    t = jnp.tanh(GELU_C * (pre + GELU_A * pre * pre * pre))
    value = 0.5 * pre * (1.0 + t)
    grad = 0.5 * (1.0 + t) + 0.5 * pre * (1.0 - t * t) * GELU_C * (1.0 + 3.0 * GELU_A * pre * pre)
    return value, grad


def matmul(a: jax.Array, b: jax.Array) -> jax.Array:
    """a @ b with float32 accumulation."""
    return jnp.dot(a, b, preferred_element_type=jnp.float32)


def matmul_t(a: jax.Array, b: jax.Array) -> jax.Array:
    """a @ bᵀ with float32 accumulation."""
    return jax.lax.dot_general(a, b, (((1,), (1,)), ((), ())), preferred_element_type=jnp.float32)


def t_matmul(a: jax.Array, b: jax.Array) -> jax.Array:
    """aᵀ @ b with float32 accumulation (a reduction over the rows of both)."""
    return jax.lax.dot_general(a, b, (((0,), (0,)), ((), ())), preferred_element_type=jnp.float32)
