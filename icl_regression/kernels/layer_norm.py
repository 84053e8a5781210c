"""LayerNorm as one Pallas kernel each way: x is read once and y written once in the forward pass; the backward
pass reads x and ∂y once, recomputes the statistics, writes ∂x and per-tile partial sums for ∂scale and ∂bias.

XLA splits a LayerNorm into about three kernels each way (../shared/DEVICE.md: 16% of the base model's bytes).
Statistics and arithmetic are float32 whatever the dtype of x; y and ∂x take x's dtype; scale and bias (and their
gradients) keep theirs (float32 parameters).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from icl_regression.kernels import common

NUM_WARPS = 4


def _forward_kernel(x_ref, scale_ref, bias_ref, out_ref):
    xhat, _ = common.normalize(x_ref[...].astype(jnp.float32))
    out_ref[...] = (xhat * scale_ref[...] + bias_ref[...]).astype(out_ref.dtype)


def _backward_kernel(x_ref, scale_ref, dy_ref, dx_ref, dscale_ref, dbias_ref):
    xhat, rstd = common.normalize(x_ref[...].astype(jnp.float32))
    dy = dy_ref[...].astype(jnp.float32)
    dx_ref[...] = common.layer_norm_input_grad(dy, xhat, rstd, scale_ref[...]).astype(dx_ref.dtype)
    dscale_ref[...] = jnp.sum(dy * xhat, axis=0)
    dbias_ref[...] = jnp.sum(dy, axis=0)


def _rows_spec(block_rows: int, width: int) -> pl.BlockSpec:
    return pl.BlockSpec((block_rows, width), lambda i: (i, 0))


def _vector_spec(width: int) -> pl.BlockSpec:
    return pl.BlockSpec((width,), lambda i: (0,))


def _partial_spec(width: int) -> pl.BlockSpec:
    return pl.BlockSpec((None, width), lambda i: (i, 0))


def _forward_2d(x, scale, bias):
    num_rows, width = x.shape
    block_rows = common.row_block(num_rows, width)
    x = common.pad_rows(x, block_rows)
    tiles = x.shape[0] // block_rows

    def build(interpret):
        return pl.pallas_call(
            _forward_kernel, out_shape=jax.ShapeDtypeStruct(x.shape, x.dtype), grid=(tiles,),
            in_specs=[_rows_spec(block_rows, width), _vector_spec(width), _vector_spec(width)],
            out_specs=_rows_spec(block_rows, width), compiler_params=common.triton_params(NUM_WARPS),
            interpret=interpret, name="layer_norm_fwd")

    return common.on_platform(build, x, scale, bias)[:num_rows]


def _backward_2d(x, scale, dy):
    num_rows, width = x.shape
    block_rows = common.row_block(num_rows, width)
    x, dy = common.pad_rows(x, block_rows), common.pad_rows(dy, block_rows)  # zero ∂y rows add nothing
    tiles = x.shape[0] // block_rows
    partial = jax.ShapeDtypeStruct((tiles, width), jnp.float32)

    def build(interpret):
        return pl.pallas_call(
            _backward_kernel, out_shape=(jax.ShapeDtypeStruct(x.shape, x.dtype), partial, partial), grid=(tiles,),
            in_specs=[_rows_spec(block_rows, width), _vector_spec(width), _rows_spec(block_rows, width)],
            out_specs=(_rows_spec(block_rows, width), _partial_spec(width), _partial_spec(width)),
            compiler_params=common.triton_params(NUM_WARPS), interpret=interpret, name="layer_norm_bwd")

    dx, dscale, dbias = common.on_platform(build, x, scale, dy)
    return dx[:num_rows], dscale.sum(axis=0), dbias.sum(axis=0)


@jax.custom_vjp
def layer_norm(x: jax.Array, scale: jax.Array, bias: jax.Array) -> jax.Array:
    """(x − mean) / √(var + ε) · scale + bias over the last axis of x [..., d]; ε = 1e-5 as the model's."""
    return _forward_2d(x.reshape(-1, x.shape[-1]), scale.astype(jnp.float32),
                       bias.astype(jnp.float32)).reshape(x.shape)


def _layer_norm_fwd(x, scale, bias):
    return layer_norm(x, scale, bias), (x, scale, bias)


def _layer_norm_bwd(residuals, dy):
    x, scale, bias = residuals
    width = x.shape[-1]
    dx, dscale, dbias = _backward_2d(x.reshape(-1, width), scale.astype(jnp.float32),
                                     dy.reshape(-1, width).astype(x.dtype))
    return dx.reshape(x.shape), dscale.astype(scale.dtype), dbias.astype(bias.dtype)


layer_norm.defvjp(_layer_norm_fwd, _layer_norm_bwd)


def layer_norm_reference(x: jax.Array, scale: jax.Array, bias: jax.Array) -> jax.Array:
    """The same function in plain JAX (float32 statistics, output in x's dtype): what the tests compare against."""
    xhat, _ = common.normalize(x.astype(jnp.float32))
    return (xhat * scale.astype(jnp.float32) + bias.astype(jnp.float32)).astype(x.dtype)
