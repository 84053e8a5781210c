"""The training step: schedule, weight-decay mask, a golden step, ensemble strategies and divergence isolation."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from icl_regression import tasks, training
from icl_regression.config import TrainConfig, run_config_from_dict

# Constant learning rate, so that the single golden step moves the parameters (the triangle's rate at step 0 is 0).
STEP_CONFIG = run_config_from_dict({
    "data": {"dim": 4, "context_len": 8, "noise_std": 0.5, "num_tasks": 4},
    "model": {"num_layers": 2, "d_model": 32, "num_heads": 2},
    "train": {"steps": 400, "batch_size": 64, "schedule": "constant", "learning_rate": 1e-3, "seed": 0},
})
POOL_ROWS = 16  # every pool below has this many rows, so that all groups share array shapes

# Measured once (jax 0.10.2, flax 0.12.8, optax 0.2.8, CPU) for seed 0, M = 4, one step from step 0.
GOLDEN_LOSS_MEAN = 6.317135810852051
GOLDEN_PARAM_SUM = 159.27373256022926
# Adam's first step moves each parameter by about ±lr whatever its gradient, so the parameter sum sees little of
# the gradient's size; its first moment (0.1 · gradient after one step) does.
GOLDEN_FIRST_MOMENT_ABS_SUM = 22.094628506224755
GOLDEN_MESSAGE = (
    "The golden training step changed. Update the GOLDEN_* constants only if the model, the task "
    "sampler, the random streams, the initialisation or the optimiser were changed on purpose (say so in the "
    "commit); otherwise this is a regression in one of them.")


@functools.lru_cache(maxsize=None)
def _chunk(num_steps: int, strategy: str):
    return training.make_train_chunk(STEP_CONFIG, num_steps, strategy)


def _group(seeds, num_tasks):
    """Initial states, members and stacked pools (one per seed) of a group."""
    states = training.init_group(STEP_CONFIG, seeds)
    members = training.Members(jnp.asarray(seeds, jnp.int32), jnp.asarray(num_tasks, jnp.int32),
                               jnp.arange(len(seeds), dtype=jnp.int32))
    pools = jnp.stack([tasks.make_pool(seed, POOL_ROWS, STEP_CONFIG.data.dim) for seed in seeds])
    return states, members, pools


def _param_sum(params) -> float:
    return float(sum(np.sum(np.asarray(leaf, np.float64)) for leaf in jax.tree.leaves(params)))


def _member(tree, i):
    return jax.tree.map(lambda x: np.asarray(x)[i], tree)


def _assert_trees_close(actual, expected, atol=1e-5, scaled_tol=0.0):
    """Leaves equal to rtol 1e-5 plus `atol`, plus `scaled_tol` times each leaf's largest entry.

    The tolerance is absolute because some parameters are pure rounding noise: the key bias of attention has an
    exactly zero gradient (softmax ignores a constant added to every score), so Adam moves it by about
    lr · noise / eps ≈ 1e-7 in a direction that depends on the summation order of the program.
    """
    for a, b in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        a, b = np.asarray(a), np.asarray(b)
        tol = atol + scaled_tol * np.abs(b).max(initial=0)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=tol)


def _flat_names(tree) -> dict[str, object]:
    return {"/".join(str(getattr(p, "key", p)) for p in path): leaf
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def test_triangle_schedule_rises_linearly_to_the_peak_then_falls_to_zero():
    cfg = TrainConfig(steps=400, learning_rate=1e-3, schedule="triangle", warmup_fraction=0.5)
    schedule = training.learning_rate_schedule(cfg)
    assert float(schedule(0)) == 0.0
    assert float(schedule(200)) == pytest.approx(1e-3, rel=1e-6)
    assert float(schedule(400)) == pytest.approx(0.0, abs=1e-12)
    steps = np.arange(0, 401)
    expected = np.interp(steps, [0, 200, 400], [0.0, 1e-3, 0.0])
    np.testing.assert_allclose([float(schedule(s)) for s in steps], expected, rtol=1e-5, atol=1e-10)

    uneven = training.learning_rate_schedule(TrainConfig(steps=1000, learning_rate=2e-3, warmup_fraction=0.1))
    np.testing.assert_allclose([float(uneven(s)) for s in (0, 50, 100, 550, 1000)],
                               [0.0, 1e-3, 2e-3, 1e-3, 0.0], rtol=1e-5, atol=1e-10)


def test_weight_decay_mask_selects_attention_and_mlp_kernels_only():
    params = training.init_group(STEP_CONFIG, [0]).params
    mask = _flat_names(training.weight_decay_mask(params))
    decayed = {name for name, value in mask.items() if value}
    assert decayed == {f"params/block_{layer}/{module}/kernel" for layer in range(2)
                       for module in ("attn/qkv", "attn/out", "mlp_in", "mlp_out")}
    assert set(mask) == set(_flat_names(params))  # one flag per parameter


def test_weight_decay_touches_only_masked_parameters():
    cfg = TrainConfig(steps=10, learning_rate=1e-2, schedule="constant", weight_decay=0.1)
    params = jax.tree.map(lambda x: x[0], training.init_group(STEP_CONFIG, [0]).params)
    optimizer = training.make_optimizer(cfg)

    @jax.jit
    def first_update(params):
        zero_grads = jax.tree.map(jnp.zeros_like, params)
        return optimizer.update(zero_grads, optimizer.init(params), params)[0]

    updates = first_update(params)
    mask = training.weight_decay_mask(params)
    for (name, update), param, decayed in zip(_flat_names(updates).items(), jax.tree.leaves(params),
                                              jax.tree.leaves(mask)):
        expected = -1e-2 * 0.1 * np.asarray(param) if decayed else np.zeros_like(param)
        np.testing.assert_allclose(np.asarray(update), expected, rtol=1e-5, atol=1e-12, err_msg=name)


def test_golden_train_step():
    states, members, pools = _group([0], [4])
    states, metrics = _chunk(1, "vmap")(states, members, pools, jnp.asarray(0, jnp.uint32))
    assert not bool(metrics["diverged"][0])
    loss, param_sum = float(metrics["loss_mean"][0]), _param_sum(states.params)
    assert loss == float(metrics["loss_last"][0])  # one step: mean = last
    np.testing.assert_allclose(loss, GOLDEN_LOSS_MEAN, rtol=1e-5, err_msg=GOLDEN_MESSAGE)
    np.testing.assert_allclose(param_sum, GOLDEN_PARAM_SUM, rtol=1e-5, err_msg=GOLDEN_MESSAGE)
    first_moment = [leaf for path, leaf in jax.tree_util.tree_flatten_with_path(states.opt_state)[0]
                    if ".mu" in jax.tree_util.keystr(path)]
    assert first_moment, GOLDEN_MESSAGE + " (no Adam first moment 'mu' in the optimiser state)"
    np.testing.assert_allclose(sum(np.abs(np.asarray(leaf, np.float64)).sum() for leaf in first_moment),
                               GOLDEN_FIRST_MOMENT_ABS_SUM, rtol=1e-5, err_msg=GOLDEN_MESSAGE)


def test_map_and_vmap_strategies_agree():
    seeds, num_tasks = [0, 1, 2], [4, 0, 16]
    results = {}
    for strategy in ("vmap", "map"):
        states, members, pools = _group(seeds, num_tasks)
        states, metrics = _chunk(2, strategy)(states, members, pools, jnp.asarray(5, jnp.uint32))
        results[strategy] = jax.device_get((states, metrics))
    (vmap_states, vmap_metrics), (map_states, map_metrics) = results["vmap"], results["map"]
    assert not np.any(vmap_metrics["diverged"]) and not np.any(map_metrics["diverged"])
    for key in ("loss_mean", "loss_last"):
        np.testing.assert_allclose(map_metrics[key], vmap_metrics[key], rtol=1e-5)
    _assert_trees_close(map_states.params, vmap_states.params)
    _assert_trees_close(map_states.opt_state, vmap_states.opt_state, atol=0, scaled_tol=1e-3)
    # The members really differ (seed and M reach the program as data).
    assert len(set(np.round(vmap_metrics["loss_mean"], 4))) == 3


def _train_alone(seed, num_tasks, num_steps):
    """One member trained as a group of one, one step per call (the golden program)."""
    states, members, pools = _group([seed], [num_tasks])
    for step in range(num_steps):
        states, metrics = _chunk(1, "vmap")(states, members, pools, jnp.asarray(step, jnp.uint32))
    return jax.device_get(states)


@pytest.mark.parametrize("strategy", ["vmap", "map"])
def test_a_diverging_member_is_frozen_and_does_not_affect_the_others(strategy):
    seeds, num_tasks = [0, 1, 2], [4, 0, 16]
    states, members, pools = _group(seeds, num_tasks)

    def poison(path, leaf):  # NaN read-out weights for member 1: its loss is NaN from the first step
        return leaf.at[1].set(jnp.nan) if "read_out" in jax.tree_util.keystr(path) else leaf

    states = states._replace(params=jax.tree_util.tree_map_with_path(poison, states.params))
    before = jax.device_get(states)
    states, metrics = _chunk(2, strategy)(states, members, pools, jnp.asarray(0, jnp.uint32))
    states, metrics = jax.device_get((states, metrics))

    np.testing.assert_array_equal(metrics["diverged"], [False, True, False])
    np.testing.assert_array_equal(states.diverged, [False, True, False])
    assert np.isnan(metrics["loss_mean"][1]) and np.all(np.isfinite(metrics["loss_mean"][[0, 2]]))
    # The diverged member keeps the parameters and optimiser state it had before the bad step.
    for after, start in zip(jax.tree.leaves(_member((states.params, states.opt_state), 1)),
                            jax.tree.leaves(_member((before.params, before.opt_state), 1))):
        np.testing.assert_array_equal(after, start)
    # The others end exactly where training them alone takes them.
    for i in (0, 2):
        alone = _train_alone(seeds[i], num_tasks[i], 2)
        _assert_trees_close(_member(states.params, i), _member(alone.params, 0))
        _assert_trees_close(_member(states.opt_state, i), _member(alone.opt_state, 0), atol=0, scaled_tol=1e-3)
