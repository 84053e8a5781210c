"""Task pools, sequence sampling and random streams: determinism, independence, nesting, the data model."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from icl_regression import rng, tasks

BATCH, CONTEXT_LEN, DIM, NOISE_STD = 64, 8, 4, 0.5


@functools.partial(jax.jit, static_argnames=("batch_size",))
def _sample(seed, step, pool, num_tasks, batch_size, noise_std):
    return tasks.sample_sequences(tasks.training_keys(seed, step), pool, num_tasks, batch_size, CONTEXT_LEN,
                                  noise_std)


def _batch(seed, step, pool=None, num_tasks=0, batch_size=BATCH, noise_std=NOISE_STD):
    """One training batch as NumPy arrays (xs, ys, ws), drawn in one compiled program."""
    pool = jnp.zeros((1, DIM)) if pool is None else pool
    seed, step = np.uint32(seed), np.uint32(step)
    return tuple(np.asarray(a) for a in _sample(seed, step, pool, num_tasks, batch_size, noise_std))


def _key_bytes(key) -> bytes:
    return np.asarray(jax.random.key_data(key)).tobytes()


@pytest.mark.parametrize("num_tasks", [0, 5])
def test_same_seed_and_step_give_the_same_batch(num_tasks):
    pool = tasks.make_pool(3, 5, DIM)
    first, second = _batch(3, 17, pool, num_tasks), _batch(3, 17, pool, num_tasks)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_different_step_or_seed_gives_different_draws():
    pool = tasks.make_pool(0, 5, DIM)
    xs, ys, ws = _batch(0, 0, pool, 5)
    for other_seed, other_step in [(0, 1), (1, 0), (2**31, 0), (0, 2**31)]:
        other_xs, other_ys, other_ws = _batch(other_seed, other_step, pool, 5)
        assert not np.allclose(xs, other_xs)
        assert not np.allclose(ys, other_ys)
        assert not np.array_equal(ws, other_ws)  # which pool rows are used differs too


def test_streams_of_one_step_are_independent_draws():
    keys = tasks.training_keys(0, 0)
    normals = {name: np.asarray(jax.random.normal(key, (1000,))) for name, key in keys.items()}
    for a, b in itertools.combinations(normals.values(), 2):
        assert abs(np.corrcoef(a, b)[0, 1]) < 0.15
        assert not np.allclose(a, b)
    all_keys = [rng.stream_key(0, stream, 0) for stream in rng.Stream]
    assert len({_key_bytes(k) for k in all_keys}) == len(all_keys)


def test_training_and_evaluation_streams_are_disjoint():
    train_ids = {int(s) for s in rng.TRAIN_STREAMS}
    eval_ids = {int(s) for s in rng.EVAL_STREAMS}
    assert train_ids and eval_ids
    assert not train_ids & eval_ids
    assert train_ids | eval_ids == {int(s) for s in rng.Stream}
    assert max(train_ids) < rng.EVAL_BASE <= min(eval_ids)


def _key_set(stream, seeds, indices, depth) -> set[bytes]:
    """Key data of `stream_key(seed, stream, *index_prefix, index)` for every seed × index, as bytes."""
    seeds, indices = jnp.asarray(seeds, jnp.uint32), jnp.asarray(indices, jnp.uint32)
    prefix = (0,) * (depth - 1)
    grid = jax.vmap(jax.vmap(lambda s, i: jax.random.key_data(rng.stream_key(s, stream, *prefix, i)),
                             (None, 0)), (0, None))(seeds, indices)
    data = np.asarray(grid).reshape(-1, grid.shape[-1])
    return {row.tobytes() for row in data}


def test_training_keys_never_equal_evaluation_keys():
    seeds, indices = np.arange(32), np.arange(256)
    train, evaluation = set(), set()
    for stream in rng.TRAIN_STREAMS:  # depth 1: per-step keys; depth 2: pool blocks (salt, block)
        for depth in (1, 2):
            train |= _key_set(stream, seeds, indices, depth)
        train |= {_key_bytes(rng.stream_key(int(seed), stream)) for seed in seeds[:4]}  # init keys
    for stream in rng.EVAL_STREAMS:
        for depth in (1, 2, 3, 4):  # evaluation sets fold in up to (seed, salt, M, draw)
            evaluation |= _key_set(stream, seeds, indices, depth)
        evaluation |= {_key_bytes(rng.stream_key(int(seed), stream)) for seed in seeds[:4]}  # bootstrap keys
    for step in (0, 1, 1000):
        train |= {_key_bytes(k) for k in tasks.training_keys(0, step).values()}
    evaluation |= {_key_bytes(k) for k in tasks.evaluation_keys(0, rng.Stream.EVAL_TRUE).values()}
    evaluation |= {_key_bytes(k) for k in tasks.evaluation_keys(0, rng.Stream.EVAL_PRETRAIN, 0, 0, 16).values()}
    # Every key is distinct within each side (nothing collapsed), and no key is shared between the sides.
    assert len(train) >= len(rng.TRAIN_STREAMS) * (2 * len(seeds) * len(indices) + 4)
    assert len(evaluation) >= len(rng.EVAL_STREAMS) * 4 * len(seeds) * len(indices)
    assert not train & evaluation


@pytest.mark.parametrize("small", [1, 5, 1023, 1024, 1025, 1500])
def test_pools_are_nested(small):
    big = np.asarray(tasks.make_pool(7, 3000, DIM))
    assert big.shape == (3000, DIM)
    np.testing.assert_array_equal(np.asarray(tasks.make_pool(7, small, DIM)), big[:small])


def test_pools_differ_across_seeds_and_salts_and_follow_the_task_scale():
    base = np.asarray(tasks.make_pool(0, 2048, DIM))
    assert not np.allclose(base, np.asarray(tasks.make_pool(1, 2048, DIM)))
    assert not np.allclose(base, np.asarray(tasks.make_pool(0, 2048, DIM, salt=2048)))
    assert not np.allclose(base[:1024], base[1024:])  # blocks are independent
    assert abs(base.std() - 1.0) < 0.05 and abs(base.mean()) < 0.05
    np.testing.assert_allclose(np.asarray(tasks.make_pool(0, 2048, DIM, task_scale=2.0)), 2.0 * base, rtol=1e-6)


def test_finite_pool_sampling_uses_only_the_first_rows():
    pool = np.asarray(tasks.make_pool(0, 100, DIM))
    num_tasks = 5
    _, _, ws = _batch(0, 3, jnp.asarray(pool), num_tasks, batch_size=1000)
    distances = np.abs(ws[:, None, :] - pool[None]).max(axis=-1)  # [B, 100]
    used = distances.argmin(axis=1)
    np.testing.assert_array_equal(distances[np.arange(len(ws)), used], 0.0)  # every task is a pool row...
    assert used.max() < num_tasks  # ...among the first M
    assert set(used) == set(range(num_tasks))  # and all of them are drawn
    counts = np.bincount(used, minlength=num_tasks)
    assert counts.min() > 150  # uniform: 200 expected each


def test_infinite_pool_gives_fresh_gaussian_tasks():
    pool = np.asarray(tasks.make_pool(0, 100, DIM))
    _, _, ws = _batch(0, 3, jnp.asarray(pool), 0, batch_size=4000)
    assert len(np.unique(ws, axis=0)) == len(ws)
    assert not (ws[:, None, :] == pool[None]).all(axis=-1).any()  # no task is a pool row
    assert abs(ws.mean()) < 0.05 and abs(ws.std() - 1.0) < 0.05
    np.testing.assert_allclose(np.cov(ws.T), np.eye(DIM), atol=0.08)


@pytest.mark.parametrize("noise_std", [0.0, 0.5, 2.0])
def test_targets_are_linear_in_the_inputs_plus_noise_of_the_given_std(noise_std):
    xs, ys, ws = _batch(1, 2, num_tasks=0, batch_size=2000, noise_std=noise_std)
    assert xs.shape == (2000, CONTEXT_LEN, DIM) and ys.shape == (2000, CONTEXT_LEN) and ws.shape == (2000, DIM)
    assert abs(xs.std() - 1.0) < 0.02 and abs(xs.mean()) < 0.02
    noise = ys - np.einsum("bkd,bd->bk", xs, ws)
    assert abs(noise.mean()) < 0.02 * max(noise_std, 1e-3)
    np.testing.assert_allclose(noise.std(), noise_std, rtol=0.02, atol=1e-5)
    if noise_std:
        assert abs(np.corrcoef(noise.ravel(), xs[..., 0].ravel())[0, 1]) < 0.03  # independent of the inputs


def test_sampling_under_jit_with_traced_num_tasks_matches_eager():
    pool = tasks.make_pool(0, 50, DIM)
    keys = tasks.training_keys(4, 9)
    sample = jax.jit(lambda n: tasks.sample_sequences(keys, pool, n, BATCH, CONTEXT_LEN, NOISE_STD))
    for num_tasks in (0, 1, 7, 50):
        jitted = sample(jnp.asarray(num_tasks, jnp.int32))
        eager = tasks.sample_sequences(keys, pool, num_tasks, BATCH, CONTEXT_LEN, NOISE_STD)
        for a, b in zip(jitted, eager):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)
    assert sample._cache_size() == 1  # one program serves every M


def test_stacked_pools_are_read_at_the_pool_index():
    pools = jnp.stack([tasks.make_pool(s, 10, DIM) for s in range(3)])
    keys = tasks.training_keys(0, 0)
    for index in range(3):
        _, _, ws = tasks.sample_sequences(keys, pools, 10, BATCH, CONTEXT_LEN, NOISE_STD, pool_index=index)
        _, _, expected = tasks.sample_sequences(keys, pools[index], 10, BATCH, CONTEXT_LEN, NOISE_STD)
        np.testing.assert_array_equal(np.asarray(ws), np.asarray(expected))



def _excess_kurtosis(values) -> float:
    values = np.asarray(values, np.float64).ravel()
    centred = values - values.mean()
    return float(np.mean(centred**4) / np.mean(centred**2) ** 2 - 3.0)


def test_laplace_prior_gives_unit_variance_heavy_tailed_nested_pools_and_fresh_tasks():
    pool = np.asarray(tasks.make_pool(0, 3000, DIM, task_prior="laplace"))
    assert abs(pool.std() - 1.0) < 0.05 and abs(pool.mean()) < 0.05  # variance τ², like the Gaussian prior
    assert abs(_excess_kurtosis(pool) - 3.0) < 0.6  # Laplace: 3; Gaussian: 0
    np.testing.assert_array_equal(np.asarray(tasks.make_pool(0, 1500, DIM, task_prior="laplace")), pool[:1500])
    np.testing.assert_allclose(np.asarray(tasks.make_pool(0, 3000, DIM, 2.0, task_prior="laplace")), 2.0 * pool,
                               rtol=1e-6)
    keys = tasks.training_keys(0, 3)
    _, _, ws = tasks.sample_sequences(keys, jnp.asarray(pool), 0, 4000, CONTEXT_LEN, NOISE_STD,
                                      task_prior="laplace")
    ws = np.asarray(ws)
    assert abs(ws.std() - 1.0) < 0.05 and abs(_excess_kurtosis(ws) - 3.0) < 0.6
    _, _, gaussian_ws = tasks.sample_sequences(keys, jnp.asarray(pool), 0, 4000, CONTEXT_LEN, NOISE_STD)
    assert abs(_excess_kurtosis(gaussian_ws)) < 0.3


def test_the_default_gaussian_prior_draws_exactly_what_it_drew_before_the_option():
    """`task_prior` defaults to "gaussian", which must keep every draw bit-identical to the draws made before the
    option existed (committed results and the golden step depend on it): N(0, 1) from the same keys."""
    key = rng.stream_key(0, rng.Stream.POOL, 0, 0)
    np.testing.assert_array_equal(np.asarray(tasks.make_pool(0, 10, DIM)),
                                  np.asarray(jax.random.normal(key, (tasks.POOL_BLOCK, DIM)))[:10])
    keys = tasks.training_keys(0, 3)
    _, _, ws = tasks.sample_sequences(keys, jnp.zeros((1, DIM)), 0, 16, CONTEXT_LEN, NOISE_STD, task_scale=2.0)
    np.testing.assert_array_equal(np.asarray(ws), 2.0 * np.asarray(jax.random.normal(keys["task_fresh"], (16, DIM))))
    with pytest.raises(ValueError, match="task_prior='cauchy'"):
        tasks.make_pool(0, 10, DIM, task_prior="cauchy")
