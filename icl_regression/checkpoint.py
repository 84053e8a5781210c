"""Checkpoints of one model's training state, inside its run folder, written atomically.

A checkpoint is `step_<N>.msgpack` (flax.serialization of params, optimiser state and the divergence flag, and the
running training loss since the last evaluation, so that a resumed run writes the train loss an uninterrupted one
would). The newest `keep` are kept, so that a crash while writing one always leaves an older complete one. A
checkpoint that cannot be read back (empty, truncated, from another model) raises `CheckpointError`; `set_aside`
renames it to `step_<N>.msgpack.corrupt`, so the engine falls back to an older one (or to step 0) and the evidence
stays.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
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


def resume_step(run: RunStore) -> int:
    """The step a run resumes from: its newest checkpoint that its metrics cover (0 if none)."""
    steps = available_steps(run)
    covered = run.covered_step() if steps else -1
    return max((s for s in steps if s <= covered), default=0)


def drop_after(run: RunStore, step: int) -> list[int]:
    """Sets aside the checkpoints past `step` (the step a run resumes from: training from it writes them again,
    bit for bit in the same group) as `step_<N>.msgpack.stale`, and returns their steps. Left in place they would
    count among the newest `keep`, so that each new checkpoint would be deleted as soon as it is written; set aside,
    not deleted, because what made them unusable (metrics that do not cover them) may be a passing read error."""
    stale = [s for s in available_steps(run) if s > step]
    for s in stale:
        set_aside(run, s, ".stale")
    return stale


def _path(run: RunStore, step: int) -> Path:
    return run.checkpoint_dir / f"{PREFIX}{step}{SUFFIX}"


def save(run: RunStore, step: int, state, keep: int, train_loss: tuple[float, int, float]) -> None:
    """Writes the checkpoint of `step` and drops all but the newest `keep`.

    `train_loss`: (sum, steps) of the per-step training losses since the last evaluation (float32 sum), and the
    last finite one (NaN if none yet), which a divergence on the first step after resuming reports."""
    loss_sum, loss_steps, last = train_loss
    payload = {"state": serialization.to_state_dict(state),
               "train_loss_sum": np.asarray(loss_sum, np.float32), "train_loss_steps": int(loss_steps),
               "train_loss_last": np.asarray(last, np.float32)}
    atomic_write_bytes(_path(run, step), serialization.msgpack_serialize(payload))
    for old in available_steps(run)[:-keep]:
        _path(run, old).unlink(missing_ok=True)


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be restored; the message names the file and why."""


def restore(run: RunStore, step: int, template):
    """The state saved at `step`, with the structure of `template`."""
    return load(run, step, template)[0]


def load(run: RunStore, step: int, template) -> tuple[object, tuple[np.float32, int, np.float32] | None]:
    """The state saved at `step` (with the structure of `template`) and its running training loss (sum, steps,
    last finite loss); the loss is None in a checkpoint written before it was saved (the state alone, at the top
    level), the last loss NaN in one written before that was."""
    path = _path(run, step)
    try:
        saved = serialization.msgpack_restore(path.read_bytes())
        if "state" not in saved:
            return _matching(template, serialization.from_state_dict(template, saved)), None
        loss = (np.float32(saved["train_loss_sum"]), int(saved["train_loss_steps"]),
                np.float32(saved.get("train_loss_last", np.nan)))
        return _matching(template, serialization.from_state_dict(template, saved["state"])), loss
    except Exception as e:  # msgpack, flax and numpy raise many kinds for damaged bytes
        size = path.stat().st_size if path.exists() else 0
        raise CheckpointError(f"{path} ({size:,} bytes) cannot be read: {type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else 'no detail'}") from e


def _matching(template, state):
    """`state`, if every array has its template's shape and dtype (flax matches the names only: a checkpoint of
    another width would load and fail later, inside the model)."""
    def kind(x) -> str:
        return f"{np.asarray(x).dtype}{list(np.shape(x))}"

    for (where, want), got in zip(jax.tree_util.tree_flatten_with_path(template)[0], jax.tree.leaves(state)):
        if kind(got) != kind(want):
            raise ValueError(f"{jax.tree_util.keystr(where)} is {kind(got)}, this model's is {kind(want)} (from "
                             "another model)")
    return state


def set_aside(run: RunStore, step: int, suffix: str = ".corrupt") -> Path:
    """Renames a checkpoint out of the way (kept for inspection; no longer among `available_steps`), by default
    an unreadable one, and returns its new path."""
    path = _path(run, step)
    aside = path.with_name(path.name + suffix)
    path.replace(aside)
    return aside
