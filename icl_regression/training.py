"""Optimiser, schedules and the pure, jitted training step for a group of models sharing one program.

A group ("ensemble") stacks E models' parameters and optimiser states on a leading axis; per-model values (seed,
M, which pool) are arrays, so models with different M or seeds train in one compiled program. One compiled call
runs `num_steps` steps for every member: `(states, members, pools, start_step) → (states, metrics)`.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from icl_regression import rng, tasks
from icl_regression.config import DataConfig, RunConfig, TrainConfig
from icl_regression.model import Transformer

DECAYED_MODULES = ("attn", "mlp_in", "mlp_out")  # weight decay touches only attention and MLP matrices


class MemberState(NamedTuple):
    params: Any
    opt_state: Any
    diverged: jax.Array  # bool: a non-finite loss or gradient was seen; the model is frozen from then on


class Members(NamedTuple):
    """Per-model values of a group, each an int32 array [E]."""

    seed: jax.Array
    num_tasks: jax.Array  # 0 = ∞
    pool_index: jax.Array  # row of the group's stacked pools


def learning_rate_schedule(cfg: TrainConfig) -> optax.Schedule:
    warmup = cfg.warmup_steps
    if cfg.schedule == "constant":
        return optax.constant_schedule(cfg.learning_rate)
    if cfg.schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(0.0, cfg.learning_rate, warmup, cfg.steps, end_value=0.0)
    # Triangle: linear warm-up from 0, then linear decay to 0 at the last step.
    return optax.join_schedules(
        [optax.linear_schedule(0.0, cfg.learning_rate, warmup),
         optax.linear_schedule(cfg.learning_rate, 0.0, cfg.steps - warmup)], [warmup])


def weight_decay_mask(params) -> Any:
    """True on the kernels of attention and MLP layers, False elsewhere (embeddings, LayerNorms, biases)."""
    def decayed(path, _):
        names = [getattr(entry, "key", "") for entry in path]
        return names[-1] == "kernel" and any(name in DECAYED_MODULES for name in names)
    return jax.tree_util.tree_map_with_path(decayed, params)


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    schedule = learning_rate_schedule(cfg)
    if cfg.weight_decay > 0:
        return optax.adamw(schedule, cfg.adam_b1, cfg.adam_b2, cfg.adam_eps, weight_decay=cfg.weight_decay,
                           mask=weight_decay_mask)
    return optax.adam(schedule, cfg.adam_b1, cfg.adam_b2, cfg.adam_eps)


def init_member(model: Transformer, optimizer: optax.GradientTransformation, data: DataConfig,
                seed) -> MemberState:
    xs = jnp.zeros((1, data.context_len, data.dim))
    ys = jnp.zeros((1, data.context_len))
    params = model.init(rng.stream_key(seed, rng.Stream.INIT), xs, ys)
    return MemberState(params, optimizer.init(params), jnp.asarray(False))


def mse_loss(model: Transformer, params, xs, ys) -> jax.Array:
    """Mean over batch and positions of (f(S_k) − y_k)², against the noisy targets."""
    return jnp.mean(jnp.square(model.apply(params, xs, ys) - ys))


def resolve_strategy(strategy: str, backend: str | None = None, num_devices: int | None = None) -> str:
    """How members share a program: `vmap` (one batched program; best on accelerators and across devices) or
    `map` (a loop over members inside one program; measured faster on CPU, see ECOSYSTEM.md)."""
    if strategy != "auto":
        return strategy
    backend = backend or jax.default_backend()
    num_devices = num_devices or jax.device_count()
    return "map" if backend == "cpu" and num_devices == 1 else "vmap"


def make_train_chunk(cfg: RunConfig, num_steps: int, strategy: str, batch_sharding=None):
    """Compiles `num_steps` training steps for every member of a group.

    Returns `chunk(states, members, pools, start_step) → (states, metrics)` with `metrics` holding per-member
    `loss_mean` and `loss_last` over the chunk, `diverged`, and where the chunk first saw a non-finite loss or
    gradient (`_first_nonfinite`). `states` are donated. `batch_sharding` (optional)
    is a sharding for one member's [B, ...] batch arrays, used to split the batch over devices.
    """
    model = Transformer(cfg.model)
    optimizer = make_optimizer(cfg.train)
    data, batch_size = cfg.data, cfg.train.batch_size

    def one_step(state: MemberState, member: Members, pools, step):
        keys = tasks.training_keys(member.seed, step)
        xs, ys, _ = tasks.sample_sequences(keys, pools, member.num_tasks, batch_size, data.context_len,
                                           data.noise_std, data.task_scale, pool_index=member.pool_index,
                                           task_prior=data.task_prior)
        if batch_sharding is not None:
            xs, ys = (jax.lax.with_sharding_constraint(a, batch_sharding(a.ndim)) for a in (xs, ys))
        loss, grads = jax.value_and_grad(functools.partial(mse_loss, model))(state.params, xs, ys)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        finite_loss, finite_grad = jnp.isfinite(loss), jnp.isfinite(optax.tree.norm(grads))
        keep_old = state.diverged | ~(finite_loss & finite_grad)
        params, opt_state = jax.tree.map(lambda old, new: jnp.where(keep_old, old, new),
                                         (state.params, state.opt_state), (params, opt_state))
        return MemberState(params, opt_state, keep_old), (loss, finite_loss, finite_grad)

    def member_chunk(state: MemberState, member: Members, pools, start_step):
        def body(carry, offset):
            return one_step(carry, member, pools, start_step + offset)
        state, (losses, finite_loss, finite_grad) = jax.lax.scan(body, state, jnp.arange(num_steps))
        return state, {"loss_mean": losses.mean(), "loss_last": losses[-1], "diverged": state.diverged,
                       **_first_nonfinite(losses, finite_loss, finite_grad)}

    if strategy == "vmap":
        ensemble_chunk = jax.vmap(member_chunk, in_axes=(0, 0, None, None))
    elif strategy == "map":
        def ensemble_chunk(states, members, pools, start_step):
            return jax.lax.map(lambda args: member_chunk(*args, pools, start_step), (states, members))
    else:
        raise ValueError(f"ensemble strategy {strategy!r}; allowed: 'vmap', 'map' (or 'auto' before resolving)")
    return jax.jit(ensemble_chunk, donate_argnums=(0,))


def _first_nonfinite(losses, finite_loss, finite_grad) -> dict:
    """Where a chunk first saw a non-finite loss or gradient (offset -1: nowhere), whether the loss was the
    non-finite one, and the loss of the step before (NaN when that step lies in an earlier chunk)."""
    bad = ~(finite_loss & finite_grad)
    offset = jnp.where(bad.any(), jnp.argmax(bad), -1)
    before = jnp.where(offset > 0, losses[jnp.maximum(offset - 1, 0)], jnp.nan)
    return {"nonfinite_offset": offset, "nonfinite_loss": ~finite_loss[jnp.maximum(offset, 0)],
            "loss_before_nonfinite": before}


def init_group(cfg: RunConfig, seeds) -> MemberState:
    """Stacked initial states, one per seed (the init stream of each member's seed)."""
    model = Transformer(cfg.model)
    optimizer = make_optimizer(cfg.train)
    return jax.jit(jax.vmap(lambda seed: init_member(model, optimizer, cfg.data, seed)))(jnp.asarray(seeds))
