"""Every estimator of the suite behind one name table, for analyses that evaluate them on demand.

Training evaluations compute only ridge and dMMSE (once per pool). Analyses need more: least squares, ridge with a
mismatched λ, smoothed dMMSE, the Laplace posterior mean. `predict(name, data, xs, ys, pool, **options)` evaluates
any of them by its name in `names`, in chunks of sequences where that bounds memory; `per_position_loss` and
`distance` are the per-position L/D and Δ of SPEC.md.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from icl_regression import estimators, names
from icl_regression.config import DataConfig

KNOWN = (names.RIDGE, names.DMMSE, *names.ANALYSIS_PREDICTORS)
NEEDS_POOL = (names.DMMSE, names.SMOOTHED_DMMSE)
REQUIRED_OPTIONS = {names.RIDGE_LAMBDA: ("lam",), names.SMOOTHED_DMMSE: ("smoothing_std",)}


def make_predictor(name: str, data: DataConfig, pool=None, **options) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """(xs [B, K, D], ys [B, K]) → preds [B, K] of predictor `name` for data of `data`.

    Options: `lam` (ridge_lambda), `smoothing_std` (smoothed_dmmse), `block_size` (dmmse, smoothed_dmmse),
    `key`, `num_samples`, `burn_in`, `scale` (laplace_mmse; the scale defaults to the data's Laplace b = τ/√2).
    """
    if name not in KNOWN:
        raise ValueError(f"predictor {name!r}; allowed: {', '.join(KNOWN)}")
    missing = [o for o in REQUIRED_OPTIONS.get(name, ()) if o not in options]
    if missing or (name in NEEDS_POOL and pool is None):
        needs = missing + (["pool"] if name in NEEDS_POOL and pool is None else [])
        raise ValueError(f"predictor {name!r} needs {', '.join(needs)}")
    if name == names.RIDGE:
        return functools.partial(estimators.ridge_preds, lam=data.ridge_lambda)
    if name == names.RIDGE_LAMBDA:
        if not options["lam"] > 0:
            raise ValueError(f"predictor {name!r} lam={options['lam']}; allowed: λ > 0 (λ = 0 is least squares: "
                             f"use {names.OLS!r})")
        return functools.partial(estimators.ridge_preds, lam=options["lam"])
    if name == names.OLS:
        return estimators.ols_preds
    block = {"block_size": options["block_size"]} if "block_size" in options else {}
    if name == names.DMMSE:
        return functools.partial(estimators.dmmse_preds, pool=pool, noise_std=data.noise_std, **block)
    if name == names.SMOOTHED_DMMSE:
        return functools.partial(estimators.smoothed_dmmse_preds, pool=pool, noise_std=data.noise_std,
                                 smoothing_std=options["smoothing_std"], **block)
    sampler = {k: options[k] for k in ("key", "num_samples", "burn_in") if k in options}
    return functools.partial(estimators.laplace_preds, scale=options.get("scale", data.laplace_scale),
                             noise_std=data.noise_std, **sampler)


def predict(name: str, data: DataConfig, xs: jax.Array, ys: jax.Array, pool=None, batch_size: int = 1_024,
            **options) -> jax.Array:
    """Predictions of `name` on every sequence, `batch_size` sequences at a time (memory grows with the chunk).

    The Laplace sampler runs on all sequences at once (its memory is O(B·K·D²), and one seed then gives one
    set of draws, not one per chunk).
    """
    fn = make_predictor(name, data, pool, **options)
    if name == names.LAPLACE_MMSE:
        return fn(xs, ys)
    size = min(batch_size, xs.shape[0])
    return jnp.concatenate([fn(xs[i:i + size], ys[i:i + size]) for i in range(0, xs.shape[0], size)])


def _mean_square_per_position(a, b) -> np.ndarray:
    return np.mean(np.square(np.asarray(a, np.float64) - np.asarray(b, np.float64)), axis=0)


def per_position_loss(preds, ys, dim: int) -> np.ndarray:
    """L/D per context position [K]: mean over sequences of (f(S_k) − y_k)² / D, against the noisy targets."""
    return _mean_square_per_position(preds, ys) / dim


def distance(preds_f, preds_g, dim: int) -> np.ndarray:
    """Δ_{f,g} per context position [K]: mean over sequences of (f − g)² / D."""
    return _mean_square_per_position(preds_f, preds_g) / dim
