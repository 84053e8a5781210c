"""Checkpoints of one model's training state, inside its run folder, written atomically.

A checkpoint is `step_<N>.msgpack` (flax.serialization of params, optimiser state and the divergence flag). The
newest `keep` are kept, so that a crash while writing one always leaves an older complete one. A checkpoint that
cannot be read back (empty, truncated, from another model) raises `CheckpointError`; `set_aside` renames it to
`step_<N>.msgpack.corrupt`, so the engine falls back to an older one (or to step 0) and the evidence stays.
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


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be restored; the message names the file and why."""


def restore(run: RunStore, step: int, template):
    """The state saved at `step`, with the structure of `template`."""
    path = _path(run, step)
    try:
        return serialization.from_bytes(template, path.read_bytes())
    except Exception as e:  # msgpack, flax and numpy raise many kinds for damaged bytes
        size = path.stat().st_size if path.exists() else 0
        raise CheckpointError(f"{path} ({size:,} bytes) cannot be read: {type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else 'no detail'}") from e


def set_aside(run: RunStore, step: int) -> Path:
    """Renames an unreadable checkpoint out of the way (kept for inspection) and returns its new path."""
    path = _path(run, step)
    aside = path.with_name(path.name + ".corrupt")
    path.replace(aside)
    return aside
