"""Checkpoints of one model's training state, inside its run folder, written atomically.

A checkpoint is `step_<N>.msgpack` (flax.serialization of params, optimiser state and the divergence flag). The
newest `keep` are kept, so that a crash while writing one always leaves an older complete one.
"""

from __future__ import annotations

from pathlib import Path

from flax import serialization

from icl_regression.store import RunStore, atomic_write_bytes

PREFIX, SUFFIX = "step_", ".msgpack"


def available_steps(run: RunStore) -> list[int]:
    if not run.checkpoint_dir.is_dir():
        return []
    steps = []
    for path in run.checkpoint_dir.glob(f"{PREFIX}*{SUFFIX}"):
        try:
            steps.append(int(path.name[len(PREFIX):-len(SUFFIX)]))
        except ValueError:
            continue
    return sorted(steps)


def _path(run: RunStore, step: int) -> Path:
    return run.checkpoint_dir / f"{PREFIX}{step}{SUFFIX}"


def save(run: RunStore, step: int, state, keep: int) -> None:
    atomic_write_bytes(_path(run, step), serialization.to_bytes(state))
    for old in available_steps(run)[:-keep]:
        _path(run, old).unlink(missing_ok=True)


def restore(run: RunStore, step: int, template):
    """The state saved at `step`, with the structure of `template`."""
    return serialization.from_bytes(template, _path(run, step).read_bytes())
