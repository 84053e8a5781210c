"""The training loop: trains a group of models in one compiled program and writes each to its own run folder.

A single run is a group of one. Members of a group share every setting that fixes array shapes or the compiled
program; they differ in M and seed (`group_signature`). Each member's folder ends up exactly as a single run
would write it, and an interrupted group resumes from the newest checkpoint all its members share.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from icl_regression import checkpoint, evaluation, names, tasks, training
from icl_regression.config import RunConfig, num_tasks_label
from icl_regression.model import Transformer
from icl_regression.store import RunStore

log = logging.getLogger(__name__)


def group_signature(cfg: RunConfig) -> str:
    """Everything but M and the seed: runs with equal signatures can share one compiled program."""
    return cfg.replace(data={"num_tasks": 1}, train={"seed": 0}).short_hash


@dataclasses.dataclass
class Progress:
    """What a group reports after each compiled call."""

    step: int
    total_steps: int
    num_members: int
    steps_per_second: float
    steps_done: int  # steps trained since this call started (after any resume)


def _pools_for(cfgs: Sequence[RunConfig]) -> tuple[list[evaluation.PoolId], np.ndarray, jax.Array]:
    """Each member's PoolId, its row in the stacked pools, and the stacked pools [P, M_max, D]."""
    data = cfgs[0].data
    pool_ids = [evaluation.PoolId(c.train.seed, 0 if data.nested_pools else c.data.num_tasks) for c in cfgs]
    unique = sorted(set(pool_ids), key=lambda p: (p.seed, p.salt))
    rows = max([c.data.num_tasks for c in cfgs] + [1])
    pools = jnp.stack([tasks.make_pool(p.seed, rows, data.dim, data.task_scale, p.salt, data.task_prior)
                       for p in unique])
    return pool_ids, np.array([unique.index(p) for p in pool_ids], np.int32), pools


def _resume_step(runs: Sequence[RunStore]) -> int:
    common = set(checkpoint.available_steps(runs[0]))
    for run in runs[1:]:
        common &= set(checkpoint.available_steps(run))
    return max(common, default=0)


def _member(tree, i: int):
    return jax.tree.map(lambda x: x[i], tree)


def _restore_states(runs, states, step: int):
    restored = [checkpoint.restore(run, step, _member(states, i)) for i, run in enumerate(runs)]
    return jax.tree.map(lambda *xs: jnp.stack(xs), *restored)


def _save_states(runs, states, step: int, keep: int) -> None:
    host = jax.device_get(states)
    for i, run in enumerate(runs):
        checkpoint.save(run, step, _member(host, i), keep)


def _float(value) -> float:
    """A float32 result as JSON: its 8 significant digits (float32 carries about 7), not 17."""
    return float(f"{float(value):.8g}")


def _records(step: int, lr: float, train_loss, diverged, metrics: dict, replicates: dict) -> list[dict]:
    """One metrics.jsonl record per member: every metric per position and averaged over positions, and the
    dynamics metrics' bootstrap replicates over evaluation sequences (6 digits: they measure noise)."""
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


class GroupTrainer:
    """Trains the members of one group from their resume step to the end (or to `stop_after_step`)."""

    def __init__(self, cfgs: Sequence[RunConfig], run_dirs: Sequence[Path], placement=None):
        signatures = {group_signature(c) for c in cfgs}
        if len(signatures) != 1:
            raise ValueError("a group's runs must differ only in data.num_tasks and train.seed")
        self.cfg = cfgs[0]
        self.cfgs = list(cfgs)
        self.runs = [RunStore(d) for d in run_dirs]
        self.placement = placement
        num_devices = placement.num_devices if placement is not None else 1
        self.strategy = training.resolve_strategy(self.cfg.train.ensemble_strategy, num_devices=num_devices)
        self.schedule = training.learning_rate_schedule(self.cfg.train)
        self.model = Transformer(self.cfg.model)
        self._chunks: dict[int, Callable] = {}
        self._evaluators: dict[bool, Callable] = {}

    def _chunk(self, num_steps: int):
        if num_steps not in self._chunks:
            batch_sharding = self.placement.batch_sharding if self.placement is not None else None
            self._chunks[num_steps] = training.make_train_chunk(self.cfg, num_steps, self.strategy, batch_sharding)
        return self._chunks[num_steps]

    def _evaluate(self, states, eval_arrays, final: bool):
        with_bootstrap = final and self.cfg.eval.num_bootstrap > 0
        if with_bootstrap not in self._evaluators:
            self._evaluators[with_bootstrap] = evaluation.make_group_evaluator(
                self.model, self.cfg.eval, self.strategy, with_bootstrap)
        per_member, shared, boot_idx, dynamics_idx = eval_arrays
        return jax.device_get(self._evaluators[with_bootstrap](states.params, per_member, shared, boot_idx,
                                                               dynamics_idx))

    def _place(self, tree):
        return tree if self.placement is None else self.placement.place_members(tree)

    def run(self, progress: Callable[[Progress], None] | None = None, stop_after_step: int | None = None,
            on_start: Callable[[], None] | None = None) -> None:
        """Trains to the end, or returns after checkpointing at `stop_after_step` (a simulated interruption)."""
        cfg = self.cfg
        for run, member_cfg in zip(self.runs, self.cfgs):
            run.init(member_cfg.to_dict())
            run.mark_running()
        if on_start is not None:
            on_start()
        pool_ids, pool_index, pools = _pools_for(self.cfgs)
        seeds = np.array([c.train.seed for c in self.cfgs], np.int32)
        members = training.Members(jnp.asarray(seeds), jnp.asarray([c.data.num_tasks for c in self.cfgs],
                                                                    jnp.int32), jnp.asarray(pool_index))
        states = training.init_group(cfg, seeds)
        step = _resume_step(self.runs)
        if step > 0:
            states = _restore_states(self.runs, states, step)
            log.info("resuming %d run(s) from step %d", len(self.runs), step)
        for run in self.runs:  # records past the checkpoint (or all, when starting afresh) are redone
            run.truncate_metrics(step if step > 0 else -1)
        states, members = self._place((states, members))
        eval_arrays = self._eval_arrays(pool_ids)
        try:
            if step == 0:
                self._log_evaluation(states, eval_arrays, 0, None, final=False)
            self._loop(states, members, pools, eval_arrays, step, progress, stop_after_step)
        finally:  # interrupted or stopped early: unfinished runs are no longer running (they resume later)
            for run in self.runs:
                if run.summary() is None:
                    run.clear_running()

    def _eval_arrays(self, pool_ids):
        bank = evaluation.EvalBank(self.cfg.data, self.cfg.eval)
        sets = [bank.sets_for(pid, c.data.num_tasks) for pid, c in zip(pool_ids, self.cfgs)]
        per_member, shared = evaluation.stack_member_sets(sets)
        boot_idx = evaluation.bootstrap_indices(self.cfg.eval) if self.cfg.eval.num_bootstrap else None
        return self._place(per_member), shared, boot_idx, evaluation.dynamics_bootstrap_indices(self.cfg.eval)

    def _loop(self, states, members, pools, eval_arrays, step, progress, stop_after_step):
        cfg = self.cfg
        total, eval_every, ckpt_every = cfg.train.steps, cfg.eval.interval, cfg.checkpoint.interval
        loss_sum, loss_steps, started, start_step = 0.0, 0, time.perf_counter(), step
        while step < total:
            next_event = min(total, (step // eval_every + 1) * eval_every, (step // ckpt_every + 1) * ckpt_every,
                             stop_after_step if stop_after_step is not None and stop_after_step > step else total)
            num = min(cfg.train.steps_per_call, next_event - step)
            states, metrics = self._chunk(num)(states, members, pools, jnp.asarray(step, jnp.uint32))
            loss_sum, loss_steps, step = loss_sum + metrics["loss_mean"] * num, loss_steps + num, step + num
            final = step == total
            if step % eval_every == 0 or final:
                self._log_evaluation(states, eval_arrays, step, jax.device_get(loss_sum / loss_steps), final)
                loss_sum, loss_steps = 0.0, 0
            if step % ckpt_every == 0 or final or step == stop_after_step:
                _save_states(self.runs, states, step, cfg.checkpoint.keep)
            if progress is not None:
                rate = (step - start_step) / max(time.perf_counter() - started, 1e-9)
                progress(Progress(step, total, len(self.runs), rate, step - start_step))
            if stop_after_step is not None and step >= stop_after_step and not final:
                return

    def _log_evaluation(self, states, eval_arrays, step, train_loss, final):
        metrics, boot, replicates = self._evaluate(states, eval_arrays, final)
        diverged = np.asarray(jax.device_get(states.diverged))
        lr = float(self.schedule(step))
        records = _records(step, lr, train_loss, diverged, metrics, replicates)
        for i, (run, record) in enumerate(zip(self.runs, records)):
            run.append_metrics(record)
            if final:
                bootstrap = {key: [_float(v) for v in values[i]] for key, values in boot.items()}
                run.write_summary(_summary(self.cfgs[i], record, bootstrap))
                run.clear_running()


def _summary(cfg: RunConfig, record: dict, bootstrap: dict) -> dict:
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
        "finished_at": time.time(),
    }


def train_run(cfg: RunConfig, run_dir: Path, placement=None, progress=None, stop_after_step=None) -> dict | None:
    """Trains one run into `run_dir` (a no-op if it is finished) and returns its summary."""
    run = RunStore(run_dir)
    run.init(cfg.to_dict())  # refuses a folder that holds another config, finished or not
    if run.summary() is None:
        GroupTrainer([cfg], [run_dir], placement).run(progress, stop_after_step)
    return run.summary()


def predict_zero_loss(cfg: RunConfig) -> float:
    """L/D of always predicting 0 on T_true: E[y²]/D = (τ²D + σ²)/D."""
    return (cfg.data.task_scale**2 * cfg.data.dim + cfg.data.noise_std**2) / cfg.data.dim


