"""The final parameters of a stored sweep's runs: from their checkpoints, or retrained and verified.

Analyses that need the trained model's predictions (interpolated tasks, distances to other estimators) need its
parameters, and checkpoints are never committed. Training is deterministic (every draw is a function of seed,
stream and step), so a run can be regenerated: the cells of the run's compiled group (every cell of the sweep with
its group signature, in grid order: the group `sweep.run_sweep` trains) are retrained into a scratch folder, and
the retrained runs' metrics records must equal the stored ones — exactly by default: on the same backend, library
versions and CPU the same program gives the same bits (a whole group is retrained, as the group was trained: on
another machine a different group composition could change the compiled program). On another CPU the compiled
kernels round differently and training drifts (the committed CPU reference sweep, retrained on a later machine, differed from
step 0 in the 8th digit and by up to 5% at the end): then the analysis refuses, unless a tolerance is accepted
knowingly, in which case it describes the retrained models and records how far their metrics deviate. Whatever their
source, the parameters are checked once more: the model's L/D on both evaluation sets, recomputed here, must match
the final metrics of the run folder they come from.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from icl_regression import checkpoint, evaluation, names, predictors, sweep, tasks, training
from icl_regression.config import INFINITE_TASKS, RunConfig, num_tasks_label, parse_num_tasks
from icl_regression.engine import GroupTrainer, group_signature
from icl_regression.model import Transformer, evaluation_model
from icl_regression.store import RunStore, StoreError, read_json, results_folder

log = logging.getLogger(__name__)

CHECK_RTOL = 1e-4  # recomputed L/D against the stored final metrics (float32 sums in another order)


class ParamsError(StoreError):
    """Parameters of a run cannot be obtained, or do not reproduce its stored metrics; the message says why (a
    StoreError: the entry points report it on one line)."""


class MissingCheckpoints(ParamsError):
    """Runs lack the checkpoint of their last step and no scratch folder was given to retrain them in."""

    def __init__(self, cells: Sequence[sweep.Cell]):
        self.cells = list(cells)
        super().__init__(f"{self._what()}: pass a scratch folder (--scratch) to retrain them there, "
                         "deterministically and verified against the stored metrics")

    def _what(self) -> str:
        return (f"{len(self.cells)} run(s) have no checkpoint of their last step (e.g. {self.cells[0].run_dir}; "
                "checkpoints are not committed)")

    def retraining_off(self) -> str:
        """The message for an entry point whose retraining was turned off (--retrain=false)."""
        return (f"{self._what()} and retraining is off (--retrain=false): --retrain=true (with --scratch, or its "
                "default folder) would retrain them there, deterministically and verified against the stored metrics")


@dataclasses.dataclass
class TrainedRun:
    name: str
    config: RunConfig
    run_dir: Path  # the stored run (its metrics are the reference)
    params: Any
    source: str  # where the parameters came from: "checkpoint" or "retrained"
    params_dir: Path  # the run folder holding those parameters (the stored one, or the retrained copy)
    deviation: float = 0.0  # largest relative deviation of the retrained run's metrics from the stored ones
    final_deviation: float = 0.0  # the same over the final evaluation only (the parameters analysed)

    def describe(self) -> dict:
        """How the parameters were obtained, for an analysis's JSON."""
        out = {"params": self.source}
        if self.source == "retrained":
            out["retrained_max_relative_deviation"] = self.deviation
            out["retrained_final_max_relative_deviation"] = self.final_deviation
        return out


def sweep_cells(workdir: Path) -> list[sweep.Cell]:
    """Every cell of a stored sweep, from its `sweep_config.json`, in grid order."""
    workdir = results_folder(workdir)
    path = workdir / names.SWEEP_CONFIG_FILE
    if not path.exists():
        raise StoreError(f"no {names.SWEEP_CONFIG_FILE} in {workdir}: not a sweep folder")
    return sweep.expand(read_json(path), workdir)


def select_cells(cells: Sequence[sweep.Cell], num_tasks: Sequence | None = None,
                 batch_sizes: Sequence[int] | None = None, finite_only: bool = False) -> list[sweep.Cell]:
    """The finished cells with M in `num_tasks` and batch in `batch_sizes` (None: all); an error names what exists."""
    done = [c for c in cells if sweep.cell_state(c) == names.DONE]
    wanted_m = None if num_tasks is None else {parse_num_tasks(m) for m in num_tasks}
    chosen = [c for c in done
              if (wanted_m is None or c.config.data.num_tasks in wanted_m)
              and (batch_sizes is None or c.config.train.batch_size in set(batch_sizes))
              and not (finite_only and c.config.data.num_tasks == INFINITE_TASKS)]
    if not chosen:
        listed = [c for c in done if not (finite_only and c.config.data.num_tasks == INFINITE_TASKS)]
        available = sorted({(num_tasks_label(c.config.data.num_tasks), c.config.train.batch_size) for c in listed})
        only = "; this analysis takes finite M only" if finite_only else ""
        raise ValueError(f"no finished run with M in {num_tasks or 'any'} and batch in {batch_sizes or 'any'}{only}; "
                         f"finished (M, batch): {available}")
    return chosen


def pool_id_of(cfg: RunConfig) -> evaluation.PoolId:
    """The pool a run trained on (as the engine chooses it)."""
    return evaluation.PoolId(cfg.train.seed, 0 if cfg.data.nested_pools else cfg.data.num_tasks)


def pool_of(cfg: RunConfig) -> jax.Array:
    """The run's pool of M tasks [M, D] (finite M only)."""
    pid, data = pool_id_of(cfg), cfg.data
    return tasks.make_pool(pid.seed, data.num_tasks, data.dim, data.task_scale, pid.salt, data.task_prior)


def final_record(run_dir: Path) -> dict:
    records = RunStore(run_dir).metrics()
    if not records:
        raise StoreError(f"no {names.METRICS_FILE} records in {run_dir}")
    return max(records, key=lambda r: r["step"])


def _restore_params(cfg: RunConfig, run_dir: Path) -> Any:
    model = Transformer(cfg.model)
    template = training.init_member(model, training.make_optimizer(cfg.train), cfg.data, cfg.train.seed)
    state = checkpoint.restore(RunStore(run_dir), cfg.train.steps, template)
    if bool(state.diverged):
        raise ParamsError(f"{run_dir} diverged: its parameters are frozen at the last finite step")
    return state.params


def _has_final_checkpoint(cell: sweep.Cell) -> bool:
    return cell.config.train.steps in checkpoint.available_steps(RunStore(cell.run_dir))


# The training loss in a record is averaged per compiled call on the device in float32: a run stopped and resumed
# splits its calls elsewhere, which moves the last digits of that average though every parameter is the same
# (measured: 1.5e-7 relative for results/cpu_budgets' runs, retrained here with every evaluation metric identical).
# Evaluations depend on the parameters alone and must match exactly; the training loss to float32 rounding.
TRAIN_LOSS = "train_loss"
TRAIN_LOSS_RTOL = 1e-6


def _is_evaluation(key: str) -> bool:
    return key != TRAIN_LOSS


def _is_train_loss(key: str) -> bool:
    return key == TRAIN_LOSS


def _max_relative_deviation(stored: list[dict], retrained: list[dict],
                            keys: Callable[[str], bool] = lambda key: True) -> tuple[float, str | None]:
    """The largest relative difference between two metrics records lists over every numeric value whose key
    `keys` accepts, and where the first difference is (None when they are identical). Lists of different length
    deviate infinitely."""
    if len(stored) != len(retrained):
        return math.inf, f"{len(stored)} stored records, {len(retrained)} retrained"
    worst, first = 0.0, None
    for a, b in zip(stored, retrained):
        other = dict(_leaves(b))
        for key, value in _leaves(a):
            if not keys(key) or value == other.get(key):
                continue
            first = first or f"step {a['step']}, {key}: stored {value!r}, retrained {other.get(key)!r}"
            if isinstance(value, float) and isinstance(other.get(key), float):
                worst = max(worst, abs(value - other[key]) / max(abs(value), abs(other[key]), 1e-30))
            else:
                worst = math.inf
    return worst, first


def _leaves(record: dict, prefix: str = ""):
    for key, value in record.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}/")
        elif isinstance(value, list):
            yield from ((f"{prefix}{key}[{i}]", v) for i, v in enumerate(value))
        else:
            yield f"{prefix}{key}", value


def retrain_groups(workdir: Path, cells: Sequence[sweep.Cell], scratch: Path, rtol: float = 0.0,
                   print_fn: Callable[[str], None] = print) -> dict[str, tuple[Path, float, float]]:
    """Retrains the compiled groups holding `cells` into `scratch` and verifies them against the stored runs.

    Returns {run name: (scratch run folder, largest relative deviation of its metrics from the stored ones, the
    same at the final evaluation)}.
    Raises ParamsError naming the first differing value if a retrained run's evaluations are not identical to the
    stored ones (`rtol` = 0), or if its final metrics deviate by more than `rtol` (relative) from the stored final
    metrics; the training loss must agree to float32 rounding (`TRAIN_LOSS_RTOL`) either way.
    """
    all_cells = sweep_cells(workdir)
    config = read_json(Path(workdir) / names.SWEEP_CONFIG_FILE)
    scratch_by_name = {c.name: c for c in sweep.expand(config, scratch)}
    needed_signatures = {group_signature(c.config) for c in cells}
    out = {}
    for signature in sorted(needed_signatures):
        group = [scratch_by_name[c.name] for c in all_cells if group_signature(c.config) == signature]
        wanted = [scratch_by_name[c.name] for c in cells if group_signature(c.config) == signature]
        if not all(_has_final_checkpoint(c) for c in wanted):
            print_fn(f"[retrain] {len(group)} run(s) of one compiled group into {scratch} "
                     f"({group[0].config.train.steps:,} steps; the group they were trained in, for identical bits)")
            GroupTrainer([c.config for c in group], [c.run_dir for c in group]).run()
        for cell in wanted:
            stored_dir = Path(workdir) / names.RUNS_DIR / cell.name
            stored, retrained = RunStore(stored_dir).metrics(), RunStore(cell.run_dir).metrics()
            deviation, first = _max_relative_deviation(stored, retrained, _is_evaluation)
            final_deviation, _ = _max_relative_deviation(stored[-1:], retrained[-1:], _is_evaluation)
            loss_deviation, loss_first = _max_relative_deviation(stored, retrained, _is_train_loss)
            loss_refused = loss_deviation > max(rtol, TRAIN_LOSS_RTOL)
            if (deviation if rtol == 0 else final_deviation) > rtol or loss_refused:
                if loss_refused:  # the message names the training loss's difference too
                    deviation, first = max(deviation, loss_deviation), first or loss_first
                raise ParamsError(
                    f"retrained {cell.name} in {cell.run_dir} does not reproduce the stored metrics of {stored_dir} "
                    f"(first difference: {first}; largest relative deviation {deviation:.2e}, at the final "
                    f"evaluation {final_deviation:.2e}; allowed {rtol:g}): its parameters are not the stored model's. "
                    "Training is bit-reproducible only on the same backend, library versions and CPU (a difference "
                    "already at step 0 points to another machine's compiled kernels). Use checkpoints from the "
                    "machine that trained it, or accept a tolerance on the final metrics (--retrain_rtol) knowingly: "
                    "the analysis then describes retrained models, and records how far their metrics deviate.")
            if deviation:
                print_fn(f"[retrain] {cell.name}: metrics deviate from the stored run by up to {deviation:.2e} "
                         f"({final_deviation:.2e} at the final evaluation, accepted up to {rtol:g})")
            elif loss_deviation:
                print_fn(f"[retrain] {cell.name}: every evaluation identical; the training loss within "
                         f"{loss_deviation:.1e} (float32 rounding of the per-call average, accepted up to "
                         f"{TRAIN_LOSS_RTOL:g})")
            out[cell.name] = (cell.run_dir, deviation, final_deviation)
    return out


def load_trained(workdir: Path, cells: Sequence[sweep.Cell], scratch: Path | None = None, rtol: float = 0.0,
                 print_fn: Callable[[str], None] = print) -> list[TrainedRun]:
    """Final parameters of `cells` (finished cells of the sweep in `workdir`), each checked against its metrics.

    From the run's own checkpoint of its last step when there is one; otherwise retrained into `scratch`
    (`retrain_groups`). Without a scratch folder a missing checkpoint is a ParamsError that says what to run.
    """
    if not (math.isfinite(rtol) and rtol >= 0):  # NaN would accept any deviation
        raise ValueError(f"--retrain_rtol={rtol}; allowed: a finite float >= 0 (0: every record exactly equal)")
    missing = [c for c in cells if not _has_final_checkpoint(c)]
    retrained = {}
    if missing:
        if scratch is None:
            raise MissingCheckpoints(missing)
        retrained = retrain_groups(workdir, missing, Path(scratch), rtol, print_fn)
    runs = []
    for cell in cells:
        params_dir, deviation, final_deviation = retrained.get(cell.name, (cell.run_dir, 0.0, 0.0))
        source = "retrained" if cell.name in retrained else "checkpoint"
        run = TrainedRun(cell.name, cell.config, cell.run_dir, _restore_params(cell.config, params_dir), source,
                         params_dir, deviation, final_deviation)
        check_against_own_metrics(run)
        runs.append(run)
    return runs


@functools.lru_cache(maxsize=8)
def _eval_bank(data, eval_cfg) -> evaluation.EvalBank:
    return evaluation.EvalBank(data, eval_cfg)


def eval_sets(cfg: RunConfig) -> dict[str, evaluation.EvalSet]:
    """The run's two evaluation sets, exactly as its training evaluated them (shared between runs of a sweep)."""
    return _eval_bank(cfg.data, cfg.eval).sets_for(pool_id_of(cfg), cfg.data.num_tasks)


@functools.partial(jax.jit, static_argnames=("model",))
def _apply(model, params, xs, ys):
    return model.apply(params, xs, ys)


def model_preds(run: TrainedRun, xs: jax.Array, ys: jax.Array, batch_size: int | None = None) -> jax.Array:
    """The trained model's predictions [N, K], `batch_size` sequences at a time (default: the run's eval batch), on
    the plain float32 path whatever path it trained on, as its stored evaluations were."""
    model = evaluation_model(Transformer(run.config.model))
    size = min(batch_size or run.config.eval.batch_size, xs.shape[0])
    return jnp.concatenate([_apply(model, run.params, xs[i:i + size], ys[i:i + size])
                            for i in range(0, xs.shape[0], size)])


def check_against_own_metrics(run: TrainedRun) -> None:
    """The model's per-position L/D on both evaluation sets, recomputed, must equal the final record of the run
    folder its parameters come from (the stored run, or its retrained copy)."""
    stored = final_record(run.params_dir)["per_position"]
    for eval_set, data in eval_sets(run.config).items():
        loss = predictors.per_position_loss(model_preds(run, data.xs, data.ys), data.ys, run.config.data.dim)
        expected = np.asarray(stored[names.loss_key(eval_set, names.PT)])
        if not np.allclose(loss, expected, rtol=CHECK_RTOL, atol=0):
            raise ParamsError(f"parameters of {run.name} (from {run.params_dir}) give L/D "
                              f"{np.round(loss, 5).tolist()} on {eval_set}, but that run's final metrics say "
                              f"{expected.tolist()}")
