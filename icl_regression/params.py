"""The final parameters of a stored run, from its checkpoint or by retraining it deterministically.

Checkpoints are never committed, so analyses that need a model's weights (the loss landscape, anything that runs the
trained model on new inputs) get them here: from the run's own final checkpoint when it has one, else by retraining
the run from its stored config into a scratch folder. Training is a pure function of the config (every draw is keyed
by seed, stream and step), so on the same machine and software the retrained run writes the same metrics, and that is
checked: every evaluation metric of every record of the retrained run must equal the stored one exactly, or the
parameters are refused (a model that does not reproduce its stored metrics is not the model the results describe).
The one exception is the logged running mean of the training loss, which may differ in its last digit
(TRAIN_LOSS_RTOL): it is accumulated inside the group's compiled program, whose arithmetic on the [members] vector
depends on the group's size, while the model itself does not.

Measured on the 2-core CPU (jax 0.10.2, `map` strategy): a cell trained in a group of 14 and retrained alone gives
identical evaluation metrics at every step and training-loss means equal to 1e-7; cells committed from another
machine (results/cpu_reference) differ from step 0 on (1e-7, growing to 2e-4 by the end) and are refused. Under `vmap`
(accelerators) a group's batched program may round differently from a single model's; the check then refuses rather
than return a different model.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import jax

from icl_regression import checkpoint, names, training
from icl_regression.config import run_config_from_dict
from icl_regression.engine import train_run
from icl_regression.store import RunStore, StoreError


TRAIN_LOSS_RTOL = 1e-6  # the training-loss mean may differ by float32 rounding; evaluation metrics must be identical


class ReproducibilityError(StoreError):
    """A retrained run's metrics differ from the stored ones; the message names the first difference."""


def _template(cfg):
    """A member state with the structure of the run's checkpoints."""
    states = training.init_group(cfg, [cfg.train.seed])
    return jax.tree.map(lambda x: x[0], states)


def restore_params(run: RunStore, step: int) -> Any:
    """The parameters saved in `run`'s checkpoint at `step`."""
    cfg = run_config_from_dict(run.config())
    return checkpoint.restore(run, step, _template(cfg)).params


def first_difference(stored: Sequence[dict], regenerated: Sequence[dict]) -> str | None:
    """None when the two metrics records agree (evaluation metrics identical, training-loss means within
    TRAIN_LOSS_RTOL); else where they first differ (step, key, both values)."""
    if [r["step"] for r in stored] != [r["step"] for r in regenerated]:
        return (f"evaluated steps differ: stored {[r['step'] for r in stored]}, "
                f"retrained {[r['step'] for r in regenerated]}")
    for a, b in zip(stored, regenerated):
        if a == b:
            continue
        for key in sorted(set(a) | set(b)):
            if key == "train_loss" and _close(a.get(key), b.get(key), TRAIN_LOSS_RTOL):
                continue
            if a.get(key) != b.get(key):
                if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
                    sub = next(k for k in sorted(set(a[key]) | set(b[key])) if a[key].get(k) != b[key].get(k))
                    return f"step {a['step']}: {key}/{sub} stored {a[key].get(sub)}, retrained {b[key].get(sub)}"
                return f"step {a['step']}: {key} stored {a.get(key)}, retrained {b.get(key)}"
    return None


def _close(x, y, rtol: float) -> bool:
    if x is None or y is None:
        return x is y
    return abs(x - y) <= rtol * max(abs(x), abs(y))


def final_params(run_dir: Path, scratch: Path | None = None) -> Any:
    """The parameters of a finished run at its last step.

    From `run_dir`'s own final checkpoint when present; otherwise the run is retrained from its config.json into
    `scratch/<run name>` (reused when already there) and its metrics must equal `run_dir`'s record for record, or
    ReproducibilityError. Without `scratch` and without a checkpoint: StoreError saying what to run.
    """
    run = RunStore(run_dir)
    summary = run.summary()
    if summary is None:
        raise StoreError(f"{run_dir} is not a finished run (no {names.SUMMARY_FILE}): finish training it first")
    final_step = int(summary["step"])
    if final_step in checkpoint.available_steps(run):
        return restore_params(run, final_step)
    if scratch is None:
        raise StoreError(f"{run_dir} has no checkpoint at its final step {final_step} (checkpoints are not committed); "
                         f"pass a scratch folder to retrain it there (experiments/landscape.py --scratch=DIR), or run "
                         f"`python experiments/train.py --config={Path(run_dir) / names.CONFIG_FILE} "
                         f"--workdir=DIR` and read DIR's checkpoint")
    cfg = run_config_from_dict(run.config())
    copy = RunStore(Path(scratch) / run.name)
    if copy.summary() is None or final_step not in checkpoint.available_steps(copy):
        if copy.dir.exists() and copy.summary() is not None:  # finished but its checkpoint is gone: train again
            for path in (copy.dir / names.SUMMARY_FILE, copy.dir / names.METRICS_FILE):
                path.unlink(missing_ok=True)
        train_run(cfg, copy.dir)
    difference = first_difference(run.metrics(), copy.metrics())
    if difference is not None:
        raise ReproducibilityError(
            f"retraining {run.name} in {copy.dir} did not reproduce its stored metrics ({difference}); the stored run "
            f"was made with other software or hardware, so its parameters cannot be regenerated here: retrain the "
            f"whole sweep on this machine, or run the analysis where its checkpoints are")
    return restore_params(copy, final_step)


def parameter_norm(params: Any) -> float:
    """The Euclidean norm of all parameters together."""
    return math.sqrt(sum(float((x.astype("float32") ** 2).sum()) for x in jax.tree.leaves(params)))
