"""The evaluation sets and SPEC's metrics on small hand-made inputs: L/D and Δ per task dimension, the bootstrap's
per-sequence values, each set's estimators computed on that set's own sequences, and one draw per pool and M."""

import jax.numpy as jnp
import numpy as np
import pytest

from icl_regression import estimators, evaluation, names, tasks
from icl_regression.config import DataConfig, EvalConfig

DIM, CONTEXT_LEN, NOISE_STD = 2, 4, 0.5


def _preds(num_sequences: int = 8, context_len: int = 6, dim: int = 4):
    """Predictions at fixed offsets from the targets: PT = y + 2, dMMSE = y + 1, ridge = y."""
    ys = jnp.asarray(np.random.default_rng(0).normal(size=(num_sequences, context_len)), jnp.float32)
    return {names.PT: ys + 2.0, names.DMMSE: ys + 1.0, names.RIDGE: ys, "_dim": dim}, ys


def test_losses_and_distances_are_per_task_dimension_and_per_position():
    """D = 4 and K = 6 differ, so dividing by K (or not at all) shows."""
    preds, ys = _preds()
    metrics = evaluation.predictor_metrics(preds, ys, names.TRUE)
    expected = {names.loss_key(names.TRUE, names.PT): 4 / 4, names.loss_key(names.TRUE, names.DMMSE): 1 / 4,
                names.loss_key(names.TRUE, names.RIDGE): 0.0, names.delta_key(names.TRUE, "pt_ridge"): 4 / 4,
                names.delta_key(names.TRUE, "pt_dmmse"): 1 / 4, names.delta_key(names.TRUE, "dmmse_ridge"): 1 / 4}
    for key, value in expected.items():
        assert metrics[key].shape == (6,), key
        np.testing.assert_allclose(metrics[key], value, atol=1e-6, err_msg=key)


def test_per_sequence_values_average_to_the_stored_metric():
    """The bootstrap resamples these per-sequence values: their mean must be the metric itself (same 1/D), or every
    replicate − final difference, and so every interval built on it, is off."""
    rng = np.random.default_rng(1)
    preds = {p: jnp.asarray(rng.normal(size=(32, 6)), jnp.float32) for p in names.PREDICTORS}
    preds["_dim"] = 4
    metrics = evaluation.predictor_metrics(preds, preds[names.RIDGE], names.TRUE)
    for key in names.BOOTSTRAP_KEYS:
        assert float(evaluation.per_sequence(preds, key).mean()) == pytest.approx(float(metrics[key].mean()),
                                                                                  rel=1e-5), key


@pytest.fixture(scope="module")
def bank():
    data = DataConfig(dim=DIM, context_len=CONTEXT_LEN, noise_std=NOISE_STD)
    return evaluation.EvalBank(data, EvalConfig(num_sequences=64, batch_size=64))


def test_each_sets_estimators_are_computed_on_its_own_sequences(bank):
    """dMMSE of the model's pool and ridge (λ = σ²/τ², τ = 1) on T_pretrain's sequences and on T_true's."""
    pool = tasks.make_pool(0, 4, DIM)
    sets = bank.sets_for(evaluation.PoolId(0), 4)
    for eval_set in (names.PRETRAIN, names.TRUE):
        s = sets[eval_set]
        np.testing.assert_allclose(s.dmmse, estimators.dmmse_preds(s.xs, s.ys, pool, NOISE_STD), rtol=1e-5,
                                   atol=1e-6, err_msg=eval_set)
        np.testing.assert_allclose(s.ridge, estimators.ridge_preds(s.xs, s.ys, NOISE_STD**2), rtol=1e-5,
                                   atol=1e-6, err_msg=eval_set)
    assert not np.allclose(sets[names.PRETRAIN].xs, sets[names.TRUE].xs)


def test_pretrain_sets_are_one_draw_per_pool_and_m(bank):
    """Every model sharing a pool and M sees the same T_pretrain sequences; other pools (seed or salt) and other M
    get their own draws (evaluation.py's docstring)."""
    def xs(seed, salt, num_tasks):
        return np.asarray(bank.sets_for(evaluation.PoolId(seed, salt), num_tasks)[names.PRETRAIN].xs)

    again = evaluation.EvalBank(bank.data, bank.eval_cfg).sets_for(evaluation.PoolId(0), 4)[names.PRETRAIN].xs
    np.testing.assert_array_equal(xs(0, 0, 4), np.asarray(again))
    for other in (xs(1, 0, 4), xs(0, 4, 4), xs(0, 0, 8)):
        assert not np.allclose(xs(0, 0, 4), other)
