"""The training loop: trains a group of models in one compiled program and writes each to its own run folder.

A single run is a group of one. Members of a group share every setting that fixes array shapes or the compiled
program; they differ in M and seed (`group_signature`). Each member's folder ends up exactly as a single run
would write it, and an interrupted group resumes from the newest checkpoint all its members share (and that their
metrics cover; an unreadable checkpoint is set aside with a warning and an older one used).

Stopping: between compiled calls the loop reads a `stopping.Stop` (a wall-clock deadline or a signal); when it
says stop, every member is checkpointed at the current step, the metrics written so far stay, and `run` returns
False. Progress reports separate compilation (timed on its own, before the first call of each program) from
training, and every compiled call is synchronised before it is timed, so rates and times left are real.

Group size and results: a member trained in a group and the same member trained alone follow the same arithmetic.
With the `map` strategy (the CPU default) they are bit-identical, train loss included (it is averaged on the host
in float32: averaging on the device rounded differently for arrays of one and of several members, 1 ulp). With
`vmap` (accelerators) XLA batches the members' matrix products and reductions and may order them differently for
different group sizes, so results agree to float32 rounding per step, and over training such rounding differences
grow slowly like any other (measured on CPU, tiny model: at most 30 ulps, 3e-6 relative, after 200 steps). A
resumed sweep whose interrupted group was split therefore matches an uninterrupted one bit for bit on CPU and to
float32 rounding on an accelerator; tests/test_engine.py checks both.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from pathlib import Path
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from icl_regression import checkpoint, evaluation, names, stopping, tasks, training
from icl_regression.config import RunConfig, num_tasks_label
from icl_regression.model import Transformer
from icl_regression.store import Claim, RunStore, StoreError, describe_holder

log = logging.getLogger(__name__)

COMPILING, EVALUATING, TRAINING = "compiling", "evaluating", "training"


def group_signature(cfg: RunConfig) -> str:
    """Everything but M and the seed: runs with equal signatures can share one compiled program."""
    return cfg.replace(data={"num_tasks": 1}, train={"seed": 0}).short_hash


@dataclasses.dataclass
class Progress:
    """What a group reports: before compiling or a first evaluation (`phase`), and after each compiled call."""

    step: int
    total_steps: int
    num_members: int
    steps_per_second: float  # training steps per second since this call started, compilation excluded
    steps_done: int  # steps trained since this call started (after any resume)
    phase: str = TRAINING  # COMPILING, EVALUATING (the first evaluation, which compiles the evaluator) or TRAINING
    compile_seconds: float = 0.0  # seconds of setup and compilation so far in this call (not in any rate)
    seconds_left: float = math.nan  # time to the group's last step at the rate so far (evaluations included)


class RunProgressPrinter:
    """Progress lines of a single run (train.py): what is compiling, then steps/s and the time left, at most every
    `every_s` seconds (and at the last step)."""

    def __init__(self, print_fn: Callable[[str], None] = print, every_s: float = 10.0):
        self.print_fn, self.every_s, self.last_print = print_fn, every_s, -math.inf

    def __call__(self, p: Progress) -> None:
        if p.phase == COMPILING:
            self.print_fn(f"compiling the training step ({p.num_members} model(s), from step {p.step})…")
        elif p.phase == EVALUATING:
            self.print_fn(f"evaluating step {p.step} (the first evaluation compiles the evaluator)…")
        elif time.perf_counter() - self.last_print >= self.every_s or p.step == p.total_steps:
            self.last_print = time.perf_counter()
            self.print_fn(f"step {p.step}/{p.total_steps} | {p.steps_per_second:,.2f} steps/s | ~"
                          f"{stopping.format_duration(p.seconds_left)} left | setup and compilation "
                          f"{p.compile_seconds:.1f} s (not counted)")


class RunHeldError(StoreError):
    """Another live process trains the run."""


def _pools_for(cfgs: Sequence[RunConfig]) -> tuple[list[evaluation.PoolId], np.ndarray, jax.Array]:
    """Each member's PoolId, its row in the stacked pools, and the stacked pools [P, M_max, D]."""
    data = cfgs[0].data
    pool_ids = [evaluation.PoolId(c.train.seed, 0 if data.nested_pools else c.data.num_tasks) for c in cfgs]
    unique = sorted(set(pool_ids), key=lambda p: (p.seed, p.salt))
    rows = max([c.data.num_tasks for c in cfgs] + [1])
    pools = jnp.stack([tasks.make_pool(p.seed, rows, data.dim, data.task_scale, p.salt, data.task_prior)
                       for p in unique])
    return pool_ids, np.array([unique.index(p) for p in pool_ids], np.int32), pools


def _resume_candidates(runs: Sequence[RunStore]) -> list[int]:
    """Checkpoint steps every member has and every member's metrics cover, newest first."""
    common = set(checkpoint.available_steps(runs[0]))
    for run in runs[1:]:
        common &= set(checkpoint.available_steps(run))
    covered = min(run.covered_step() for run in runs)
    return sorted((s for s in common if s <= covered), reverse=True)


def _member(tree, i: int):
    return jax.tree.map(lambda x: x[i], tree)


def _restore_states(runs, states, warn: Callable[[str], None]) -> tuple[object, int, tuple]:
    """The group's states at the newest usable common checkpoint, its step and the members' running training loss
    (`_running_loss`); the initial states, 0 and (0.0, 0, NaN) if there is none.

    An unreadable checkpoint is set aside with a one-line warning and the next older common one is tried."""
    candidates = _resume_candidates(runs)
    while candidates:
        step, restored, losses, bad = candidates[0], [], [], []
        for i, run in enumerate(runs):
            try:
                state, loss = checkpoint.load(run, step, _member(states, i))
                restored.append(state)
                losses.append(loss)
            except checkpoint.CheckpointError as e:
                bad.append((run, e))
        if not bad:
            _drop_stale(runs, step)
            return jax.tree.map(lambda *xs: jnp.stack(xs), *restored), step, _running_loss(losses)
        for run, _ in bad:
            checkpoint.set_aside(run, step)
        candidates = _resume_candidates(runs)
        fallback = f"step {candidates[0]}" if candidates else "step 0 (no older checkpoint)"
        for _, error in bad:
            warn(f"warning: {error}; set aside as .corrupt, resuming from {fallback}")
    _drop_stale(runs, 0)
    return states, 0, (0.0, 0, np.full(len(runs), np.nan, np.float32))


def _drop_stale(runs, step: int) -> None:
    """Sets aside the members' checkpoints past the group's resume step (`.stale`): those its metrics do not cover
    (a damaged metrics.jsonl), or that another member lacks."""
    for run in runs:
        stale = checkpoint.drop_after(run, step)
        if stale:
            log.info("%s: checkpoints at steps %s set aside as .stale, past the resume step %d (training rewrites "
                     "them)", run.name, stale, step)


def _running_loss(losses: Sequence[tuple | None]) -> tuple:
    """The members' saved (loss sum, steps, last finite loss) as (sum [E] float32, steps, last [E]). A checkpoint
    written before the running loss was saved has None: then the sums restart at 0, as they did then (the next
    record's train loss averages only the steps since that checkpoint), and the last losses are unknown (NaN)."""
    if any(loss is None for loss in losses):
        return 0.0, 0, np.full(len(losses), np.nan, np.float32)
    return (np.array([loss[0] for loss in losses], np.float32), losses[0][1],
            np.array([loss[2] for loss in losses], np.float32))


def _save_states(runs, states, step: int, keep: int, loss_sum, loss_steps: int, last_loss) -> None:
    host = jax.device_get(states)
    sums = np.broadcast_to(np.asarray(loss_sum, np.float32), (len(runs),))
    for i, run in enumerate(runs):
        checkpoint.save(run, step, _member(host, i), keep, (sums[i], loss_steps, last_loss[i]))


def _float(value) -> float:
    """A float32 result as JSON: its 8 significant digits (float32 carries about 7), not 17."""
    return float(f"{float(value):.8g}")


def _records(step: int, lr: float, train_loss, diverged, metrics: dict, replicates: dict) -> list[dict]:
    """One metrics.jsonl record per member: every metric per position and averaged over positions, and the
    dynamics metrics' bootstrap replicates over evaluation sequences (6 digits: they measure noise).
    `learning_rate` is the schedule at `step`, the rate of the next update (0 at both ends of the triangle);
    `train_loss` the mean training loss over the steps since the previous record."""
    records = []
    for i in range(len(diverged)):
        per_position = {key: [_float(v) for v in values[i]] for key, values in metrics.items()}
        records.append({
            "step": step, "learning_rate": lr,
            "train_loss": None if train_loss is None else _float(train_loss[i]),
            "diverged": bool(diverged[i]),
            "mean": {key: _float(np.mean(metrics[key][i])) for key in per_position},
            "per_position": per_position,
        })
        if replicates:
            records[-1]["bootstrap"] = {key: [float(f"{v:.6g}") for v in values[i]]
                                        for key, values in replicates.items()}
    return records


def claim_runs(runs: Sequence[RunStore]) -> list[Claim]:
    """Claims every run for this process, or none: raises RunHeldError naming the holder of the first one held."""
    claims = []
    for run in runs:
        claim = run.claim()
        if claim is None:
            for held in claims:
                held.release()
            raise RunHeldError(f"{run.dir} is being trained by another process ({describe_holder(run)}); "
                               "wait for it to finish or stop it")
        claims.append(claim)
    return claims


@dataclasses.dataclass
class _Group:
    """A group's arrays once set up: states (restored), per-member values, pools, evaluation sets, start step."""

    states: object
    members: training.Members
    pools: jax.Array
    eval_arrays: tuple
    step: int
    train_loss: tuple  # (sum [E], steps) of the training losses since the last evaluation, last finite loss [E]
    final_train_loss: np.ndarray | None = None  # when only the final evaluation is redone: its stored train loss


# Besides every checkpoint.interval steps, a group is checkpointed at the first call boundary once this much wall
# time has passed since its last checkpoint, so a hard kill (kill -9, a lost machine) costs at most about this much
# training whatever the interval. It changes no result: training resumes bit for bit from any step.
CHECKPOINT_EVERY_S = 120.0


class GroupTrainer:
    """Trains the members of one group from their resume step to the end (or until told to stop)."""

    def __init__(self, cfgs: Sequence[RunConfig], run_dirs: Sequence[Path], placement=None,
                 print_fn: Callable[[str], None] | None = None, checkpoint_every_s: float = CHECKPOINT_EVERY_S):
        if not cfgs or len(cfgs) != len(run_dirs):
            raise ValueError(f"a group needs one run folder per config: {len(cfgs)} config(s), {len(run_dirs)} "
                             "folder(s)")
        if len({Path(d).resolve() for d in run_dirs}) != len(run_dirs):
            raise ValueError(f"a group's run folders must be distinct: {[str(d) for d in run_dirs]}")
        signatures = {group_signature(c) for c in cfgs}
        if len(signatures) != 1:
            raise ValueError("a group's runs must differ only in data.num_tasks and train.seed")
        self.cfg = cfgs[0]
        self.cfgs = list(cfgs)
        self.runs = [RunStore(d) for d in run_dirs]
        self.placement = placement
        self.print_fn = print_fn or log.warning
        num_devices = placement.num_devices if placement is not None else 1
        self.strategy = training.resolve_strategy(self.cfg.train.ensemble_strategy, num_devices=num_devices)
        self.schedule = training.learning_rate_schedule(self.cfg.train)
        self.model = Transformer(self.cfg.model)
        self._chunks: dict[int, Callable] = {}
        self._evaluators: dict[bool, Callable] = {}
        self._divergence = [run.divergence() for run in self.runs]
        self._last_loss = np.full(len(self.runs), np.nan, np.float32)  # each member's last finite training loss
        self.compile_seconds = 0.0
        self.checkpoint_every_s = checkpoint_every_s

    def run(self, progress: Callable[[Progress], None] | None = None, stop_after_step: int | None = None,
            on_start: Callable[[], None] | None = None, stop: stopping.Stop | None = None,
            claims: Sequence[Claim] | None = None) -> bool:
        """Trains to the end (True), or checkpoints and returns False at `stop_after_step` or when `stop` says so.

        `stop` acts at the end of a compiled call; `stop_after_step` may split a call, which changes nothing but the
        rounding of the next record's train loss (an average over the steps since the last evaluation, summed per
        call).

        `claims`: the members' claims when the caller took them (the sweep does); otherwise they are taken here
        (RunHeldError if another process holds one). They are released on any exit.
        """
        for run, member_cfg in zip(self.runs, self.cfgs):
            run.init(member_cfg.to_dict())
        claims = list(claims) if claims is not None else claim_runs(self.runs)
        try:
            if on_start is not None:
                on_start()
            stop = stop if stop is not None else stopping.Stop()
            return self._run(progress or (lambda p: None), stop_after_step, stop)
        finally:  # finished, stopped or interrupted: unfinished runs are no longer running (they resume later)
            for claim in claims:
                claim.release()

    def _run(self, progress, stop_after_step, stop) -> bool:
        started = time.perf_counter()
        group = self._setup()
        self.compile_seconds += time.perf_counter() - started  # setup compiles the samplers and estimators
        total = self.cfg.train.steps
        if stop or (stop_after_step is not None and stop_after_step <= group.step < total):
            return False  # nothing trained since the checkpoint it resumed from
        if group.step in (0, total):  # step 0, or a finished group whose summary is missing: evaluate
            self._announce_evaluation(progress, group.step)
            self._log_evaluation(group.states, group.eval_arrays, group.step, group.final_train_loss,
                                 final=group.step == total)
            if group.step == total:
                return True
        return self._loop(group, progress, stop_after_step, stop)

    def _setup(self) -> _Group:
        pool_ids, pool_index, pools = _pools_for(self.cfgs)
        seeds = np.array([c.train.seed for c in self.cfgs], np.int32)
        members = training.Members(jnp.asarray(seeds), jnp.asarray([c.data.num_tasks for c in self.cfgs],
                                                                    jnp.int32), jnp.asarray(pool_index))
        states, step, train_loss = _restore_states(self.runs, training.init_group(self.cfg, seeds), self.print_fn)
        if step > 0:
            log.info("resuming %d run(s) from step %d", len(self.runs), step)
        final = step == self.cfg.train.steps
        final_train_loss = self._stored_final_train_loss() if final else None
        for run in self.runs:  # records past the checkpoint (or all, when starting afresh) are redone; a final
            run.truncate_metrics(step if step > 0 else -1)  # record stays until its redo replaces it
        states, members = self._place((states, members))
        return _Group(states, members, self._replicate(pools), self._eval_arrays(pool_ids), step, train_loss,
                      final_train_loss)

    def _stored_final_train_loss(self):
        """The final records' train loss, kept when a finished group is only re-evaluated (its summary was lost)."""
        losses = []
        for run in self.runs:
            final = [r for r in run.metrics() if r["step"] == self.cfg.train.steps]
            losses.append(final[0]["train_loss"] if final and final[0]["train_loss"] is not None else np.nan)
        return np.asarray(losses, np.float32)

    def _chunk(self, num_steps: int, args, progress, group_step: int):
        """The compiled program for `num_steps` steps, compiled ahead of its first call (timed apart)."""
        if num_steps not in self._chunks:
            progress(Progress(group_step, self.cfg.train.steps, len(self.runs), math.nan, 0, COMPILING,
                              self.compile_seconds))
            started = time.perf_counter()
            fn = training.make_train_chunk(self.cfg, num_steps, self.strategy, self._batch_sharding())
            self._chunks[num_steps] = fn.lower(*args).compile()
            self.compile_seconds += time.perf_counter() - started
        return self._chunks[num_steps]

    def _announce_evaluation(self, progress, step: int) -> None:
        """Reports the first evaluation of this process (it compiles the evaluator, which takes a while)."""
        if not self._evaluators:
            progress(Progress(step, self.cfg.train.steps, len(self.runs), math.nan, 0, EVALUATING,
                              self.compile_seconds))

    def _evaluate(self, states, eval_arrays, final: bool):
        with_bootstrap = final and self.cfg.eval.num_bootstrap > 0
        first = with_bootstrap not in self._evaluators
        started = time.perf_counter()
        if first:
            self._evaluators[with_bootstrap] = evaluation.make_group_evaluator(
                self.model, self.cfg.eval, self.strategy, with_bootstrap, self._batch_sharding())
        per_member, shared, boot_idx, dynamics_idx = eval_arrays
        out = jax.device_get(self._evaluators[with_bootstrap](states.params, per_member, shared, boot_idx,
                                                              dynamics_idx))
        if first:  # compilation and one evaluation: counted as compilation, so rates stay those of training
            self.compile_seconds += time.perf_counter() - started
        return out  # (metrics, final bootstrap replicates, per-evaluation dynamics replicates)

    def _batch_sharding(self):
        """How the compiled step and evaluator split one member's batch over the 'data' devices (None: one device)."""
        return self.placement.batch_sharding if self.placement is not None else None

    def _place(self, tree):
        return tree if self.placement is None else self.placement.place_members(tree)

    def _replicate(self, tree):
        return tree if self.placement is None else self.placement.replicate(tree)

    def _eval_arrays(self, pool_ids):
        bank = evaluation.EvalBank(self.cfg.data, self.cfg.eval)
        sets = [bank.sets_for(pid, c.data.num_tasks) for pid, c in zip(pool_ids, self.cfgs)]
        per_member, shared = evaluation.stack_member_sets(sets)
        boot_idx = evaluation.bootstrap_indices(self.cfg.eval) if self.cfg.eval.num_bootstrap else None
        return (self._place(per_member), *self._replicate(
            (shared, boot_idx, evaluation.dynamics_bootstrap_indices(self.cfg.eval))))

    def _next_call(self, step: int, stop_after_step: int | None) -> int:
        """Steps in the next compiled call: up to the next evaluation, checkpoint, requested stop or the end."""
        cfg = self.cfg
        total, eval_every, ckpt_every = cfg.train.steps, cfg.eval.interval, cfg.checkpoint.interval
        next_event = min(total, (step // eval_every + 1) * eval_every, (step // ckpt_every + 1) * ckpt_every,
                         stop_after_step if stop_after_step is not None and stop_after_step > step else total)
        return min(cfg.train.steps_per_call, next_event - step)

    def _loop(self, group: _Group, progress, stop_after_step, stop) -> bool:
        cfg = self.cfg
        total, step, states = cfg.train.steps, group.step, group.states
        (loss_sum, loss_steps, self._last_loss), start_step = group.train_loss, step
        started, compile_before, train_seconds = time.perf_counter(), self.compile_seconds, 0.0
        last_saved = started
        while step < total:
            num = self._next_call(step, stop_after_step)
            args = (states, group.members, group.pools, np.uint32(step))  # from the host: no device-to-device copy
            chunk = self._chunk(num, args, progress, step)
            call_started = time.perf_counter()
            states, metrics = chunk(*args)
            metrics = jax.device_get(metrics)  # waits for the call: the time below is the call's real time
            train_seconds += time.perf_counter() - call_started
            self._note_divergence(step, metrics)
            loss_sum, loss_steps, step = loss_sum + metrics["loss_mean"] * num, loss_steps + num, step + num
            final = step == total
            if step % cfg.eval.interval == 0 or final:
                self._log_evaluation(states, group.eval_arrays, step, loss_sum / loss_steps, final)
                loss_sum, loss_steps = 0.0, 0
            stopping_now = not final and (step == stop_after_step or bool(stop))
            overdue = time.perf_counter() - last_saved >= self.checkpoint_every_s
            if step % cfg.checkpoint.interval == 0 or final or stopping_now or overdue:
                _save_states(self.runs, states, step, cfg.checkpoint.keep, loss_sum, loss_steps, self._last_loss)
                last_saved = time.perf_counter()
            steady = time.perf_counter() - started - (self.compile_seconds - compile_before)
            done = step - start_step
            progress(Progress(step, total, len(self.runs), done / max(train_seconds, 1e-9), done, TRAINING,
                              self.compile_seconds, (total - step) * steady / max(done, 1)))
            if stopping_now:
                return False
        return True

    def _note_divergence(self, start_step: int, metrics: dict) -> None:
        """Records and prints the first non-finite loss or gradient of each member (once per run)."""
        for i, run in enumerate(self.runs):
            offset = int(metrics["nonfinite_offset"][i])
            if self._divergence[i] is None and offset >= 0:
                before = float(metrics["loss_before_nonfinite"][i]) if offset > 0 else float(self._last_loss[i])
                info = {"step": start_step + offset + 1,  # the step count (as in metrics) whose update was refused
                        "reason": names.NONFINITE_LOSS if metrics["nonfinite_loss"][i] else names.NONFINITE_GRADIENT,
                        "last_finite_loss": _float(before) if math.isfinite(before) else None}
                self._divergence[i] = info
                run.write_divergence(info)
                self.print_fn(f"{run.name} diverged at step {info['step']}: {info['reason']} (last finite training "
                              f"loss {info['last_finite_loss']}); it is frozen there and marked diverged")
        self._last_loss = np.where(np.isfinite(metrics["loss_last"]), metrics["loss_last"], self._last_loss)

    def _log_evaluation(self, states, eval_arrays, step, train_loss, final):
        metrics, boot, replicates = self._evaluate(states, eval_arrays, final)
        diverged = np.asarray(jax.device_get(states.diverged))
        lr = float(self.schedule(step))
        records = _records(step, lr, train_loss, diverged, metrics, replicates)
        for i, (run, record) in enumerate(zip(self.runs, records)):
            if not final:
                run.append_metrics(record)
            else:
                run.put_final_metrics(record)  # in place of the stored one when a finished run is only re-evaluated
                bootstrap = {key: [_float(v) for v in values[i]] for key, values in boot.items()}
                summary = _summary(self.cfgs[i], record, bootstrap, self._divergence[i])
                if summary[names.RUNAWAY]:
                    self.print_fn(f"{run.name} ran away: final L/D on T_true {summary['final'][_PT_TRUE]:.4g} is "
                                  f"over {names.RUNAWAY_FACTOR:.0f}x the predict-zero L/D "
                                  f"{predict_zero_loss(self.cfgs[i]):.4g}; flagged '{names.RUNAWAY}'")
                run.write_summary(summary)
                run.clear_running()


_PT_TRUE = names.loss_key(names.TRUE, names.PT)


def _summary(cfg: RunConfig, record: dict, bootstrap: dict, divergence: dict | None) -> dict:
    final_loss = record["mean"][_PT_TRUE]
    return {
        "name": cfg.run_name,
        "status": names.DIVERGED if record["diverged"] else names.DONE,
        "num_tasks": cfg.data.num_tasks,
        "num_tasks_label": num_tasks_label(cfg.data.num_tasks),
        "batch_size": cfg.train.batch_size,
        "steps": cfg.train.steps,
        "seed": cfg.train.seed,
        "step": record["step"],
        "train_loss": record["train_loss"],
        "final": record["mean"],
        "final_per_position": record["per_position"],
        "bootstrap": bootstrap,
        names.DIVERGENCE: divergence if record["diverged"] else None,
        names.RUNAWAY: bool(math.isfinite(final_loss) and final_loss > names.RUNAWAY_FACTOR * predict_zero_loss(cfg)),
        "finished_at": time.time(),
    }


def train_run(cfg: RunConfig, run_dir: Path, placement=None, progress=None, stop_after_step=None,
              stop: stopping.Stop | None = None, print_fn=None) -> dict | None:
    """Trains one run into `run_dir` (a no-op if it is finished) and returns its summary (None when stopped)."""
    run = RunStore(run_dir)
    run.init(cfg.to_dict())  # refuses a folder that holds another config, finished or not
    if run.summary() is None:
        GroupTrainer([cfg], [run_dir], placement, print_fn).run(progress, stop_after_step, stop=stop)
    return run.summary()


def stopped_message(run_dirs: Sequence[Path], reason: str | None, command: str) -> str:
    """What a stopped command tells its user, read from disk: where each run's newest checkpoint is, and how to
    resume."""
    newest = {Path(d): checkpoint.resume_step(RunStore(d)) for d in run_dirs}
    saved = {d: s for d, s in newest.items() if s > 0}
    if not saved:
        where = "no checkpoint yet, it restarts from step 0"
    elif len(run_dirs) == 1:
        (run_dir, step), = saved.items()
        where = f"checkpoint at step {step} in {run_dir / names.CHECKPOINT_DIR}"
    else:
        where = f"checkpoints of {len(saved)} run(s), newest step {max(saved.values())}"
    return f"stopped ({reason or 'on request'}): {where}; resume with: {command}"


def predict_zero_loss(cfg: RunConfig) -> float:
    """L/D of always predicting 0 on T_true: E[y²]/D = (τ²D + σ²)/D."""
    return (cfg.data.task_scale**2 * cfg.data.dim + cfg.data.noise_std**2) / cfg.data.dim
