"""Randomness as a pure function of (seed, stream, indices).

Every random draw in the suite comes from `stream_key(seed, stream, *indices)`. Training streams and evaluation
streams have disjoint ids (training < EVAL_BASE <= evaluation), and the stream id is the first value folded into
the seed's key, so no training draw can reuse an evaluation key: the two key sets are images of disjoint inputs
under the same fold-in chain.
"""

import enum

import jax
import jax.numpy as jnp

EVAL_BASE = 1_000


class Stream(enum.IntEnum):
    # Training streams.
    POOL = 1  # the task pool of a seed
    INIT = 2  # model initialisation
    TASK_INDEX = 3  # which pool task each training sequence uses
    TASK_FRESH = 4  # fresh Gaussian tasks (M = ∞)
    INPUTS = 5  # x_k
    NOISE = 6  # ε_k
    # Evaluation streams.
    EVAL_TRUE = EVAL_BASE + 1  # the T_true evaluation set
    EVAL_PRETRAIN = EVAL_BASE + 2  # T_pretrain evaluation sets
    BOOTSTRAP = EVAL_BASE + 3  # bootstrap resampling of evaluation sequences
    EVAL_TASKS = EVAL_BASE + 4  # tasks drawn for analyses (interpolation, landscapes)


TRAIN_STREAMS = tuple(s for s in Stream if s < EVAL_BASE)
EVAL_STREAMS = tuple(s for s in Stream if s >= EVAL_BASE)


def stream_key(seed, stream: Stream, *indices) -> jax.Array:
    """The key of draw `indices` (e.g. the step) in `stream` of `seed`; traceable in seed and indices."""
    key = jax.random.fold_in(jax.random.key(0), jnp.asarray(seed, jnp.uint32))
    key = jax.random.fold_in(key, int(stream))
    for index in indices:
        key = jax.random.fold_in(key, jnp.asarray(index, jnp.uint32))
    return key
