"""The closed-form estimators against brute-force NumPy (float64, one explicit solve per prefix)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

from icl_regression import estimators


def _regression_data(seed, batch, context_len, dim, noise_std, pool=None):
    """xs [B, K, D], ys [B, K] (float32) with tasks from `pool` (if given) or fresh Gaussians; also the tasks."""
    rng = np.random.default_rng(seed)
    xs = rng.standard_normal((batch, context_len, dim))
    if pool is None:
        ws = rng.standard_normal((batch, dim))
    else:
        ws = np.asarray(pool, np.float64)[rng.integers(0, len(pool), batch)]
    ys = np.einsum("bkd,bd->bk", xs, ws) + noise_std * rng.standard_normal((batch, context_len))
    return xs.astype(np.float32), ys.astype(np.float32), ws


def _per_prefix(xs, ys, fit):
    """preds[b, k] = x_kᵀ fit(X_{<k}, y_{<k}), with 0 for the empty prefix."""
    xs, ys = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
    batch, context_len, _ = xs.shape
    preds = np.zeros((batch, context_len))
    for b in range(batch):
        for k in range(1, context_len):
            preds[b, k] = xs[b, k] @ fit(xs[b, :k], ys[b, :k])
    return preds


def ridge_numpy(xs, ys, lam):
    dim = xs.shape[-1]
    return _per_prefix(xs, ys, lambda x, y: np.linalg.solve(x.T @ x + lam * np.eye(dim), x.T @ y))


def ols_numpy(xs, ys):
    return _per_prefix(xs, ys, lambda x, y: np.linalg.lstsq(x, y, rcond=None)[0])


def dmmse_numpy(xs, ys, pool, noise_std):
    """Posterior mean over the pool, one softmax (by log-sum-exp) per prefix; the pool mean for the empty one."""
    xs, ys, pool = (np.asarray(a, np.float64) for a in (xs, ys, pool))
    batch, context_len, _ = xs.shape
    preds = np.zeros((batch, context_len))
    for b in range(batch):
        for k in range(context_len):
            residuals = ys[b, :k, None] - xs[b, :k] @ pool.T  # [k, M]
            log_w = -np.sum(residuals**2, axis=0) / (2 * noise_std**2)
            posterior = np.exp(log_w - logsumexp(log_w))
            preds[b, k] = xs[b, k] @ (posterior @ pool)
    return preds


def _gaussian_pool(seed, num_tasks, dim):
    return np.random.default_rng(seed).standard_normal((num_tasks, dim)).astype(np.float32)


@pytest.mark.parametrize("lam", [0.25, 1.0, 3.0])
def test_ridge_equals_per_prefix_solve(lam):
    xs, ys, _ = _regression_data(0, batch=6, context_len=10, dim=3, noise_std=0.5)
    preds = np.asarray(estimators.ridge_preds(xs, ys, lam))
    assert preds.shape == ys.shape
    np.testing.assert_allclose(preds, ridge_numpy(xs, ys, lam), atol=2e-5, rtol=1e-4)


def test_ridge_with_vanishing_lambda_is_least_squares_once_overdetermined():
    dim = 3
    xs, ys, _ = _regression_data(1, batch=6, context_len=12, dim=dim, noise_std=0.5)
    preds = np.asarray(estimators.ridge_preds(xs, ys, 1e-6))
    overdetermined = slice(dim + 1, None)  # prefixes of k > D pairs
    np.testing.assert_allclose(preds[:, overdetermined], ols_numpy(xs, ys)[:, overdetermined], atol=1e-4)
    np.testing.assert_allclose(preds[:, overdetermined], np.asarray(estimators.ols_preds(xs, ys))[:, overdetermined],
                               atol=1e-4)


def test_ols_equals_min_norm_lstsq_on_every_prefix_including_underdetermined():
    dim = 5  # prefixes k = 1..5 are underdetermined: lstsq gives the minimum-norm solution
    xs, ys, _ = _regression_data(2, batch=6, context_len=12, dim=dim, noise_std=0.5)
    preds = np.asarray(estimators.ols_preds(xs, ys))
    expected = ols_numpy(xs, ys)
    np.testing.assert_allclose(preds[:, 1:dim + 1], expected[:, 1:dim + 1], atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(preds, expected, atol=1e-4, rtol=1e-4)


def test_first_position_predicts_zero_for_ridge_and_ols_and_pool_mean_for_dmmse():
    pool = _gaussian_pool(3, 9, 3)
    xs, ys, _ = _regression_data(3, batch=8, context_len=5, dim=3, noise_std=0.5, pool=pool)
    np.testing.assert_array_equal(np.asarray(estimators.ridge_preds(xs, ys, 0.25))[:, 0], 0.0)
    np.testing.assert_array_equal(np.asarray(estimators.ols_preds(xs, ys))[:, 0], 0.0)
    dmmse = np.asarray(estimators.dmmse_preds(xs, ys, pool, 0.5))
    np.testing.assert_allclose(dmmse[:, 0], xs[:, 0] @ pool.astype(np.float64).mean(axis=0), atol=1e-5)


def test_dmmse_with_one_task_returns_that_task_everywhere():
    task = _gaussian_pool(4, 1, 3)
    xs, ys, _ = _regression_data(4, batch=8, context_len=7, dim=3, noise_std=0.5)  # ys from other tasks
    preds = np.asarray(estimators.dmmse_preds(xs, ys, task, 0.5))
    np.testing.assert_allclose(preds, xs @ task[0], atol=1e-5)


@pytest.mark.parametrize("noise_std", [0.25, 0.5, 1.0])
def test_dmmse_equals_brute_force_posterior(noise_std):
    pool = _gaussian_pool(5, 37, 3)
    xs, ys, _ = _regression_data(5, batch=6, context_len=10, dim=3, noise_std=noise_std, pool=pool)
    preds = np.asarray(estimators.dmmse_preds(xs, ys, pool, noise_std, block_size=8))
    np.testing.assert_allclose(preds, dmmse_numpy(xs, ys, pool, noise_std), atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("block_size", [1, 7, 37, 1024])
def test_dmmse_blocked_equals_unblocked(block_size):
    num_tasks = 37  # not a multiple of 7: the last block is padded
    pool = _gaussian_pool(6, num_tasks, 4)
    xs, ys, _ = _regression_data(6, batch=16, context_len=9, dim=4, noise_std=0.5, pool=pool)
    unblocked = np.asarray(estimators.dmmse_preds(xs, ys, pool, 0.5, block_size=num_tasks))
    blocked = np.asarray(estimators.dmmse_preds(xs, ys, pool, 0.5, block_size=block_size))
    np.testing.assert_allclose(blocked, unblocked, atol=1e-5, rtol=1e-5)


def test_dmmse_is_stable_with_tiny_noise_and_large_targets():
    noise_std, dim = 1e-3, 3
    pool = _gaussian_pool(7, 37, dim)
    xs, ys, ws = _regression_data(7, batch=16, context_len=8, dim=dim, noise_std=noise_std, pool=pool)
    preds = np.asarray(estimators.dmmse_preds(xs, ys, pool, noise_std, block_size=7))
    assert np.all(np.isfinite(preds))
    # With almost no noise the posterior collapses onto the true pool task once D pairs are seen.
    np.testing.assert_allclose(preds[:, dim:], np.einsum("bkd,bd->bk", xs, ws)[:, dim:], atol=1e-3)
    # Targets that no pool task explains: squared errors of order 1e4 / 2e-6, far beyond exp's range.
    huge = np.asarray(estimators.dmmse_preds(xs, 100.0 * ys, pool, noise_std, block_size=7))
    assert np.all(np.isfinite(huge))
    # The prediction is a convex combination of the pool tasks' predictions.
    task_preds = np.einsum("bkd,md->bkm", xs, pool)
    assert np.all(huge <= task_preds.max(axis=-1) + 1e-4) and np.all(huge >= task_preds.min(axis=-1) - 1e-4)


def test_dmmse_first_position_is_the_pool_mean_even_with_tiny_noise():
    pool = _gaussian_pool(10, 37, 3)
    xs, ys, _ = _regression_data(10, batch=8, context_len=6, dim=3, noise_std=10.0)
    preds = np.asarray(estimators.dmmse_preds(xs, ys, pool, 1e-3))
    np.testing.assert_allclose(preds[:, 0], xs[:, 0] @ pool.astype(np.float64).mean(axis=0), atol=1e-4)


def test_dmmse_over_a_large_gaussian_pool_approaches_ridge():
    dim, context_len, noise_std = 2, 6, 0.5
    pool = np.asarray(jax.random.normal(jax.random.key(0), (2**14, dim)))
    xs, ys, _ = _regression_data(8, batch=512, context_len=context_len, dim=dim, noise_std=noise_std)
    ridge = np.asarray(estimators.ridge_preds(xs, ys, noise_std**2))[:, 1:]

    def relative_error(tasks):
        preds = np.asarray(estimators.dmmse_preds(xs, ys, tasks, noise_std))[:, 1:]
        return np.linalg.norm(preds - ridge) / np.linalg.norm(ridge)

    # Measured about 0.015 over several seeds; a pool of 16 tasks is about 0.45 away.
    assert relative_error(pool) < 0.04
    assert relative_error(pool[:16]) > 0.2


def test_estimators_under_jit_match_eager():
    pool = _gaussian_pool(9, 11, 3)
    xs, ys, _ = _regression_data(9, batch=4, context_len=8, dim=3, noise_std=0.5, pool=pool)
    jitted_ridge = np.asarray(jax.jit(estimators.ridge_preds)(xs, ys, 0.25))
    with jax.disable_jit():
        eager_ridge = np.asarray(estimators.ridge_preds(jnp.asarray(xs), jnp.asarray(ys), 0.25))
    np.testing.assert_allclose(jitted_ridge, eager_ridge, atol=1e-5, rtol=1e-5)

    # Traced λ and σ, and the estimators composed inside a caller's jit.
    @jax.jit
    def all_preds(xs, ys, lam, noise_std):
        return (estimators.ridge_preds(xs, ys, lam), estimators.ols_preds(xs, ys),
                estimators.dmmse_preds(xs, ys, pool, noise_std, block_size=4))

    ridge, ols, dmmse = (np.asarray(a) for a in all_preds(xs, ys, 0.25, 0.5))
    np.testing.assert_allclose(ridge, eager_ridge, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(ols, ols_numpy(xs, ys), atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(dmmse, dmmse_numpy(xs, ys, pool, 0.5), atol=2e-5, rtol=1e-4)
