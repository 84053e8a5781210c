"""The transformer block's MLP half as fused Pallas kernels: out = x + W₂ᵀ·gelu(W₁ᵀ·LN(x) + b₁) + b₂.

The 4·d hidden layer never reaches memory. Forward: one kernel per tile of rows normalises x, and for each block
of hidden units computes the pre-activation, GELU and its product with the matching rows of W₂, accumulating the
output in float32. Backward (`jax.custom_vjp`, nothing saved but the inputs): the hidden layer is recomputed
twice, by two kernels that split the work by what they reduce over:
- `mlp_dx`, one program per tile of rows: ∂x (through the residual, the MLP and the LayerNorm) and per-tile
  partial sums of ∂ln_scale, ∂ln_bias and ∂b₂;
- `mlp_dw`, one program per (block of hidden units, split of the rows): partial ∂W₁, ∂b₁, ∂W₂ over its rows,
  summed over the few splits afterwards.
That trades about 1.5× the MLP's matrix FLOPs for never writing or reading the [N, 4d] hidden layer and its
gradients (../shared/DEVICE.md: the MLP is 38% of the bytes the base model's step moves, and the step is
memory-bound).

Inputs: x [..., d] in the compute dtype (the residual stream); W₁ [d, 4d], W₂ [4d, d] in the compute dtype; the
LayerNorm's scale and bias and b₁, b₂ in float32. Matrix products accumulate in float32; LayerNorm and GELU are
computed in float32. Shapes must be powers of two for the Triton lowering (d = 64, 128, 256 in the study).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from icl_regression.kernels import common

MAX_ROW_SPLITS = 4  # the dW kernel's programs split the rows this many ways (then sum the float32 partials)

# Tile choices are first guesses for an H100, untuned (experiments/PERFORMANCE.md): they bound the float32
# accumulators each program keeps in registers ([rows, d] in the forward and ∂x kernels, 2 × [d, block] in ∂W).


def num_warps(width: int) -> int:
    return 4 if width <= 64 else 8


def hidden_block(width: int, hidden: int) -> int:
    """Hidden units per loop step of the forward and ∂x kernels: 64 up to d = 128, 32 above."""
    return min(hidden, 64 if width <= 128 else 32)


def dw_hidden_block(width: int, hidden: int) -> int:
    """Hidden units per program of the ∂W kernel: 32 up to d = 128, 16 above."""
    return min(hidden, 32 if width <= 128 else 16)


def _normed(x, scale_ref, bias_ref, dtype):
    """(x, x̂, rstd) in float32 and LN(x) in the compute dtype, for a loaded tile x [rows, d]."""
    x = x.astype(jnp.float32)
    xhat, rstd = common.normalize(x)
    return x, xhat, rstd, (xhat * scale_ref[...] + bias_ref[...]).astype(dtype)


def _forward_kernel(x_ref, ln_scale_ref, ln_bias_ref, w1_ref, b1_ref, w2_ref, b2_ref, out_ref, *, block_hidden):
    dtype = w1_ref.dtype
    x, _, _, xn = _normed(x_ref[...], ln_scale_ref, ln_bias_ref, dtype)

    def body(j, acc):
        cols = pl.ds(pl.multiple_of(j * block_hidden, block_hidden), block_hidden)
        act = common.gelu_tanh(common.matmul(xn, w1_ref[:, cols]) + b1_ref[cols])
        return acc + common.matmul(act.astype(dtype), w2_ref[cols, :])

    acc = jax.lax.fori_loop(0, w1_ref.shape[1] // block_hidden, body, jnp.zeros(x.shape, jnp.float32))
    out_ref[...] = (x + acc + b2_ref[...]).astype(out_ref.dtype)


def _dx_kernel(x_ref, dout_ref, ln_scale_ref, ln_bias_ref, w1_ref, b1_ref, w2_ref,
               dx_ref, dln_scale_ref, dln_bias_ref, db2_ref, *, block_hidden):
    dtype = w1_ref.dtype
    _, xhat, rstd, xn = _normed(x_ref[...], ln_scale_ref, ln_bias_ref, dtype)
    dout = dout_ref[...]
    dout_c = dout.astype(dtype)

    def body(j, dxn):
        cols = pl.ds(pl.multiple_of(j * block_hidden, block_hidden), block_hidden)
        w1 = w1_ref[:, cols]
        _, dgelu = common.gelu_tanh_and_grad(common.matmul(xn, w1) + b1_ref[cols])
        dpre = common.matmul_t(dout_c, w2_ref[cols, :]) * dgelu
        return dxn + common.matmul_t(dpre.astype(dtype), w1)

    dxn = jax.lax.fori_loop(0, w1_ref.shape[1] // block_hidden, body, jnp.zeros(xhat.shape, jnp.float32))
    dout = dout.astype(jnp.float32)
    dx_ref[...] = (dout + common.layer_norm_input_grad(dxn, xhat, rstd, ln_scale_ref[...])).astype(dx_ref.dtype)
    dln_scale_ref[...] = jnp.sum(dxn * xhat, axis=0)
    dln_bias_ref[...] = jnp.sum(dxn, axis=0)
    db2_ref[...] = jnp.sum(dout, axis=0)


def _dw_kernel(x_ref, dout_ref, ln_scale_ref, ln_bias_ref, w1_ref, b1_ref, w2_ref, dw1_ref, db1_ref, dw2_ref, *,
               block_rows, tiles_per_split):
    dtype = w1_ref.dtype
    split = pl.program_id(1)
    w1, b1, w2 = w1_ref[...], b1_ref[...], w2_ref[...]

    def body(t, carry):
        acc1, accb1, acc2 = carry
        start = pl.multiple_of((split * tiles_per_split + t) * block_rows, block_rows)
        rows = pl.ds(start, block_rows)
        _, _, _, xn = _normed(x_ref[rows, :], ln_scale_ref, ln_bias_ref, dtype)
        dout = dout_ref[rows, :].astype(dtype)
        act, dgelu = common.gelu_tanh_and_grad(common.matmul(xn, w1) + b1)
        dpre = common.matmul_t(dout, w2) * dgelu
        return (acc1 + common.t_matmul(xn, dpre.astype(dtype)), accb1 + jnp.sum(dpre, axis=0),
                acc2 + common.t_matmul(act.astype(dtype), dout))

    width, block_hidden = w1.shape
    zeros = (jnp.zeros((width, block_hidden), jnp.float32), jnp.zeros((block_hidden,), jnp.float32),
             jnp.zeros((block_hidden, width), jnp.float32))
    acc1, accb1, acc2 = jax.lax.fori_loop(0, tiles_per_split, body, zeros)
    dw1_ref[...], db1_ref[...], dw2_ref[...] = acc1, accb1, acc2


def _layout(x, w1, dw: bool = False):
    num_rows, width = x.shape
    hidden = w1.shape[1]
    block_rows = common.row_block(num_rows, width)
    return num_rows, width, hidden, block_rows, (dw_hidden_block if dw else hidden_block)(width, hidden)


def _vector(width):
    return pl.BlockSpec((width,), lambda *_: (0,))


def _whole(shape):
    return pl.BlockSpec(shape, lambda *_: (0,) * len(shape))


def _forward_2d(x, ln_scale, ln_bias, w1, b1, w2, b2):
    num_rows, width, hidden, block_rows, block_hidden = _layout(x, w1)
    x = common.pad_rows(x, block_rows)
    rows = pl.BlockSpec((block_rows, width), lambda i: (i, 0))

    def build(interpret):
        return pl.pallas_call(
            functools.partial(_forward_kernel, block_hidden=block_hidden),
            out_shape=jax.ShapeDtypeStruct(x.shape, x.dtype), grid=(x.shape[0] // block_rows,),
            in_specs=[rows, _vector(width), _vector(width), _whole(w1.shape), _vector(hidden), _whole(w2.shape),
                      _vector(width)],
            out_specs=rows, compiler_params=common.triton_params(num_warps(width)), interpret=interpret,
            name="mlp_fwd")

    return common.on_platform(build, x, ln_scale, ln_bias, w1, b1, w2, b2)[:num_rows]


def _dx_2d(x, dout, ln_scale, ln_bias, w1, b1, w2):
    num_rows, width, hidden, block_rows, block_hidden = _layout(x, w1)
    x, dout = common.pad_rows(x, block_rows), common.pad_rows(dout, block_rows)
    tiles = x.shape[0] // block_rows
    rows = pl.BlockSpec((block_rows, width), lambda i: (i, 0))
    partial_spec = pl.BlockSpec((None, width), lambda i: (i, 0))
    partial = jax.ShapeDtypeStruct((tiles, width), jnp.float32)

    def build(interpret):
        return pl.pallas_call(
            functools.partial(_dx_kernel, block_hidden=block_hidden),
            out_shape=(jax.ShapeDtypeStruct(x.shape, x.dtype), partial, partial, partial), grid=(tiles,),
            in_specs=[rows, rows, _vector(width), _vector(width), _whole(w1.shape), _vector(hidden),
                      _whole(w2.shape)],
            out_specs=(rows, partial_spec, partial_spec, partial_spec),
            compiler_params=common.triton_params(num_warps(width)), interpret=interpret, name="mlp_dx")

    dx, dln_scale, dln_bias, db2 = common.on_platform(build, x, dout, ln_scale, ln_bias, w1, b1, w2)
    return dx[:num_rows], dln_scale.sum(axis=0), dln_bias.sum(axis=0), db2.sum(axis=0)


def _dw_2d(x, dout, ln_scale, ln_bias, w1, b1, w2):
    num_rows, width, hidden, block_rows, block_hidden = _layout(x, w1, dw=True)
    x, dout = common.pad_rows(x, block_rows), common.pad_rows(dout, block_rows)
    tiles = x.shape[0] // block_rows
    splits = math.gcd(tiles, MAX_ROW_SPLITS)
    kernel = functools.partial(_dw_kernel, block_rows=block_rows, tiles_per_split=tiles // splits)

    def build(interpret):
        return pl.pallas_call(
            kernel, grid=(hidden // block_hidden, splits),
            out_shape=(jax.ShapeDtypeStruct((splits, width, hidden), jnp.float32),
                       jax.ShapeDtypeStruct((splits, hidden), jnp.float32),
                       jax.ShapeDtypeStruct((splits, hidden, width), jnp.float32)),
            in_specs=[_whole(x.shape), _whole(x.shape), _vector(width), _vector(width),
                      pl.BlockSpec((width, block_hidden), lambda j, s: (0, j)),
                      pl.BlockSpec((block_hidden,), lambda j, s: (j,)),
                      pl.BlockSpec((block_hidden, width), lambda j, s: (j, 0))],
            out_specs=(pl.BlockSpec((None, width, block_hidden), lambda j, s: (s, 0, j)),
                       pl.BlockSpec((None, block_hidden), lambda j, s: (s, j)),
                       pl.BlockSpec((None, block_hidden, width), lambda j, s: (s, j, 0))),
            compiler_params=common.triton_params(num_warps(width)), interpret=interpret, name="mlp_dw")

    dw1, db1, dw2 = common.on_platform(build, x, dout, ln_scale, ln_bias, w1, b1, w2)
    return dw1.sum(axis=0), db1.sum(axis=0), dw2.sum(axis=0)


def _as_2d(x, ln_scale, ln_bias, w1, b1, w2, b2):
    f32 = jnp.float32
    return (x.reshape(-1, x.shape[-1]), ln_scale.astype(f32), ln_bias.astype(f32), w1, b1.astype(f32), w2,
            b2.astype(f32))


@jax.custom_vjp
def mlp_block(x, ln_scale, ln_bias, w1, b1, w2, b2):
    """x + gelu(LN(x)·W₁ + b₁)·W₂ + b₂ over the last axis of x [..., d]; W₁ [d, 4d], W₂ [4d, d]."""
    return _forward_2d(*_as_2d(x, ln_scale, ln_bias, w1, b1, w2, b2)).reshape(x.shape)


def _mlp_block_fwd(*args):
    return mlp_block(*args), args


def _mlp_block_bwd(residuals, dout):
    x, ln_scale, ln_bias, w1, b1, w2, b2 = residuals
    x2, s2, lb2, w1_, b1_, w2_, _ = _as_2d(*residuals)
    dout2 = dout.reshape(x2.shape).astype(x.dtype)
    dx, dln_scale, dln_bias, db2 = _dx_2d(x2, dout2, s2, lb2, w1_, b1_, w2_)
    dw1, db1, dw2 = _dw_2d(x2, dout2, s2, lb2, w1_, b1_, w2_)
    grads = (dx.reshape(x.shape), dln_scale, dln_bias, dw1, db1, dw2, db2)
    return tuple(g.astype(p.dtype) for g, p in zip(grads, residuals))


mlp_block.defvjp(_mlp_block_fwd, _mlp_block_bwd)


def mlp_block_reference(x, ln_scale, ln_bias, w1, b1, w2, b2):
    """The same function in plain JAX, at the same precisions: what the tests compare against."""
    f32 = jnp.float32
    xhat, _ = common.normalize(x.astype(f32))
    xn = (xhat * ln_scale.astype(f32) + ln_bias.astype(f32)).astype(w1.dtype)
    act = common.gelu_tanh(jnp.dot(xn, w1, preferred_element_type=f32) + b1.astype(f32))
    out = jnp.dot(act.astype(w2.dtype), w2, preferred_element_type=f32) + b2.astype(f32)
    return (x.astype(f32) + out).astype(x.dtype)
