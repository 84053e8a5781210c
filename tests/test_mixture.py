"""The model as a mixture of strategies: a·ridge + (1 − a)·dMMSE recovered from predictions built with a known a."""

import jax.numpy as jnp
import numpy as np
import pytest

from icl_regression import evaluation, names

NUM_SEQUENCES, CONTEXT_LEN, DIM = 4_096, 6, 2


def predictions(weights, noise_std: float, seed: int = 0) -> dict:
    """Ridge and dMMSE as two unrelated random predictors; PT = a_k·ridge + (1 − a_k)·dMMSE + noise, per position."""
    rng = np.random.default_rng(seed)
    ridge, dmmse = rng.standard_normal((2, NUM_SEQUENCES, CONTEXT_LEN))
    noise = noise_std * rng.standard_normal((NUM_SEQUENCES, CONTEXT_LEN))
    pt = np.asarray(weights) * ridge + (1 - np.asarray(weights)) * dmmse + noise
    return {names.PT: jnp.asarray(pt), names.RIDGE: jnp.asarray(ridge), names.DMMSE: jnp.asarray(dmmse), "_dim": DIM}


def test_known_weights_are_recovered_per_position_and_the_residual_is_the_noise():
    weights = np.linspace(0.0, 1.0, CONTEXT_LEN)
    out = evaluation.mixture_metrics(predictions(weights, noise_std=0.3), names.TRUE)
    np.testing.assert_allclose(out[names.mixture_weight_key(names.TRUE)], weights, atol=0.02)
    np.testing.assert_allclose(out[names.mixture_residual_key(names.TRUE)], 0.3**2 / DIM, rtol=0.06)


def test_weights_outside_the_unit_interval_are_clipped():
    out = evaluation.mixture_metrics(predictions([1.5] * 3 + [-0.5] * 3, noise_std=0.0), names.TRUE)
    np.testing.assert_allclose(out[names.mixture_weight_key(names.TRUE)], [1.0] * 3 + [0.0] * 3)


def test_pure_strategies_have_no_residual():
    for weight in (0.0, 1.0):
        out = evaluation.mixture_metrics(predictions([weight] * CONTEXT_LEN, noise_std=0.0), names.PRETRAIN)
        np.testing.assert_allclose(out[names.mixture_weight_key(names.PRETRAIN)], weight, atol=1e-6)
        np.testing.assert_allclose(out[names.mixture_residual_key(names.PRETRAIN)], 0.0, atol=1e-10)


def test_weight_is_undefined_where_ridge_equals_dmmse():
    preds = predictions([0.5] * CONTEXT_LEN, noise_std=0.1)
    preds[names.DMMSE] = preds[names.RIDGE]  # M = ∞
    out = evaluation.mixture_metrics(preds, names.TRUE)
    assert np.all(np.isnan(out[names.mixture_weight_key(names.TRUE)]))
    assert np.all(np.isnan(out[names.mixture_residual_key(names.TRUE)]))


def test_dynamics_replicates_scatter_around_the_full_sample_values():
    preds = predictions([0.3] * CONTEXT_LEN, noise_std=0.5)
    ys = preds[names.RIDGE] + 0.5
    indices = evaluation.dynamics_bootstrap_indices(evaluation.EvalConfig(num_sequences=NUM_SEQUENCES,
                                                                          num_bootstrap_per_eval=64))
    reps = evaluation.dynamics_replicates(preds, ys, evaluation.resampling_weights(indices, NUM_SEQUENCES))
    assert set(reps) == set(names.DYNAMICS_BOOTSTRAP_KEYS) and all(len(v) == 64 for v in reps.values())
    full = {**evaluation.predictor_metrics(preds, ys, names.TRUE), **evaluation.mixture_metrics(preds, names.TRUE)}
    for key, values in reps.items():
        center, spread = float(np.mean(full[key])), float(np.std(values))
        assert 0 < spread < 0.05 * abs(center), key  # resampling 4,096 sequences moves the mean a little
        assert np.mean(values) == pytest.approx(center, abs=3 * spread / np.sqrt(8)), key


def test_identity_resample_reproduces_the_metrics():
    preds = predictions([0.7] * CONTEXT_LEN, noise_std=0.2)
    ys = preds[names.DMMSE]
    identity = evaluation.resampling_weights(jnp.arange(NUM_SEQUENCES)[None, :], NUM_SEQUENCES)
    reps = evaluation.dynamics_replicates(preds, ys, identity)
    full = {**evaluation.predictor_metrics(preds, ys, names.TRUE), **evaluation.mixture_metrics(preds, names.TRUE)}
    for key, values in reps.items():
        assert float(values[0]) == pytest.approx(float(np.mean(full[key])), rel=1e-5), key
