"""A tiny end-to-end run: it writes its folder, learns, skips when done, resumes exactly, and guards its config."""

import json
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
from conftest import TINY_CONFIG, TINY_SWEEP

from icl_regression import checkpoint, config, engine, names, store

# The tiny run of conftest, made to learn within its 400 steps on CPU. Measured (seeds 0-2, batch 64): with D = 4
# the model sits on the predict-zero plateau for 1000+ steps at learning rates 1e-4 … 1e-2; with D = 2 it leaves
# it after about 300 steps but is still at 0.6-0.7 of the predict-zero loss after 1000; with D = 1 and a peak
# rate of 2e-3 its final T_true L/D is 0.44-0.52 of the predict-zero L/D (seeds 0-3; a peak of 3e-3 spikes).
LEARN_CONFIG = config.run_config_from_dict(TINY_CONFIG).replace(
    data={"dim": 1, "num_tasks": 0},
    train={"steps": 400, "learning_rate": 2e-3})
STEPS = LEARN_CONFIG.train.steps
EVAL_STEPS = list(range(0, STEPS + 1, LEARN_CONFIG.eval.interval))
LEARNED_FRACTION = 0.7  # final L/D on T_true must be below this fraction of the predict-zero L/D


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One uninterrupted run, shared by the tests of this module: (its folder, the summary train_run returned)."""
    run_dir = tmp_path_factory.mktemp("engine") / LEARN_CONFIG.run_name
    summary = engine.train_run(LEARN_CONFIG, run_dir)
    return run_dir, summary


def _steps(run_dir) -> list[int]:
    return [record["step"] for record in store.RunStore(run_dir).metrics()]


def test_run_writes_config_metrics_summary_and_checkpoints(trained_run):
    run_dir, summary = trained_run
    run = store.RunStore(run_dir)
    assert store.read_json(run_dir / names.CONFIG_FILE) == json.loads(json.dumps(LEARN_CONFIG.to_dict()))
    assert config.run_config_from_dict(run.config()) == LEARN_CONFIG

    lines = (run_dir / names.METRICS_FILE).read_text().splitlines()
    assert len(lines) == len(EVAL_STEPS)  # one line per evaluation
    records = [json.loads(line) for line in lines]
    assert [r["step"] for r in records] == EVAL_STEPS
    assert records[0]["train_loss"] is None and all(r["train_loss"] > 0 for r in records[1:])
    for record in records:
        assert set(record["mean"]) == set(names.all_metric_keys())
        assert all(len(v) == LEARN_CONFIG.data.context_len for v in record["per_position"].values())
        mixture = {names.mixture_weight_key(e) for e in names.EVAL_SETS} | {names.mixture_residual_key(e)
                                                                            for e in names.EVAL_SETS}
        assert all(np.isfinite(v) for key, v in record["mean"].items() if key not in mixture)
        assert all(np.isnan(record["mean"][key]) for key in mixture)  # M = ∞: ridge = dMMSE, no mixture weight
        assert set(record["bootstrap"]) == set(names.DYNAMICS_BOOTSTRAP_KEYS)
        assert all(len(v) == LEARN_CONFIG.eval.num_bootstrap_per_eval for v in record["bootstrap"].values())
        replicates = record["bootstrap"][names.THRESHOLD_METRIC]  # resamples of the same sequences: close to it
        assert np.mean(replicates) == pytest.approx(record["mean"][names.THRESHOLD_METRIC], rel=0.1)
        assert not record["diverged"]
    assert records[-1]["learning_rate"] == pytest.approx(0.0, abs=1e-12)  # the triangle ends at 0

    assert summary == run.summary()
    assert summary["status"] == names.DONE and run.state() == names.DONE
    assert summary["step"] == STEPS and summary["name"] == LEARN_CONFIG.run_name
    assert summary["num_tasks"] == 0 and summary["num_tasks_label"] == "inf"
    assert summary["final"] == records[-1]["mean"]
    assert set(summary["bootstrap"]) == set(names.BOOTSTRAP_KEYS)
    assert all(len(v) == LEARN_CONFIG.eval.num_bootstrap for v in summary["bootstrap"].values())
    assert not (run_dir / names.HEARTBEAT_FILE).exists()

    keep, interval = LEARN_CONFIG.checkpoint.keep, LEARN_CONFIG.checkpoint.interval
    assert checkpoint.available_steps(run) == [STEPS - interval * i for i in reversed(range(keep))]


def test_run_learns_to_beat_predicting_zero(trained_run):
    run_dir, summary = trained_run
    zero = engine.predict_zero_loss(LEARN_CONFIG)  # 1.25 here
    first, last = store.RunStore(run_dir).metrics()[0]["mean"], summary["final"]
    pt = names.loss_key(names.TRUE, names.PT)
    # Measured final L/D on T_true: 0.556 for seed 0 (0.61-0.65 for seeds 1-3), ridge 0.501, step 0 about 1.06.
    assert last[pt] < LEARNED_FRACTION * zero, f"final L/D {last[pt]:.3f}, predict-zero {zero:.3f}"
    assert last[pt] < 0.8 * first[pt], f"final L/D {last[pt]:.3f}, at step 0 {first[pt]:.3f}"
    assert last[pt] > last[names.loss_key(names.TRUE, names.RIDGE)]  # ridge is Bayes-optimal here
    to_ridge = names.delta_key(names.TRUE, "pt_ridge")
    assert last[to_ridge] < 0.5 * first[to_ridge]  # it moves towards ridge (measured 0.60 → 0.05)
    # With M = ∞ the pretraining distribution is T_true, and dMMSE is ridge.
    assert last[names.loss_key(names.PRETRAIN, names.PT)] == last[pt]
    assert last[names.delta_key(names.TRUE, "dmmse_ridge")] == 0.0


def test_rerunning_a_finished_run_is_a_no_op(trained_run):
    run_dir, summary = trained_run
    before = {path.name: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()}
    assert engine.train_run(LEARN_CONFIG, run_dir) == summary
    after = {path.name: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()}
    assert after == before


def test_an_interrupted_run_resumes_to_the_same_result(trained_run, tmp_path):
    run_dir, summary = trained_run
    resumed_dir = tmp_path / LEARN_CONFIG.run_name
    stop = 200
    assert engine.train_run(LEARN_CONFIG, resumed_dir, stop_after_step=stop) is None
    run = store.RunStore(resumed_dir)
    assert run.summary() is None and run.state() == names.PENDING  # stopped: not left marked running
    assert _steps(resumed_dir) == [s for s in EVAL_STEPS if s <= stop]
    assert max(checkpoint.available_steps(run)) == stop

    resumed = engine.train_run(LEARN_CONFIG, resumed_dir)
    assert _steps(resumed_dir) == EVAL_STEPS  # no duplicated or missing evaluation
    for key, value in summary["final"].items():
        assert resumed["final"][key] == pytest.approx(value, rel=1e-6, abs=1e-7, nan_ok=True), key
    np.testing.assert_allclose(resumed["train_loss"], summary["train_loss"], rtol=1e-6)
    for a, b in zip(store.RunStore(run_dir).metrics(), run.metrics()):
        for key in a["mean"]:
            assert b["mean"][key] == pytest.approx(a["mean"][key], rel=1e-6, abs=1e-7, nan_ok=True), (a["step"], key)
    assert resumed["status"] == names.DONE and not (resumed_dir / names.HEARTBEAT_FILE).exists()


def test_a_folder_holding_another_config_is_refused(trained_run, tmp_path):
    run_dir, _ = trained_run
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    other = LEARN_CONFIG.replace(train={"learning_rate": 1e-4})
    store.write_json(other_dir / names.CONFIG_FILE, other.to_dict())
    with pytest.raises(store.StoreError, match="different config"):
        engine.train_run(LEARN_CONFIG, other_dir)
    assert sorted(p.name for p in other_dir.iterdir()) == [names.CONFIG_FILE]  # nothing was written


def test_a_finished_folder_holding_another_config_is_refused(trained_run, tmp_path):
    run_dir, _ = trained_run
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    with pytest.raises(store.StoreError):
        engine.train_run(LEARN_CONFIG.replace(train={"learning_rate": 1e-4}), copy)


class _Crash(Exception):
    pass


def _crash(progress):
    if progress.phase == engine.TRAINING:  # after the first compiled call (not while compiling or evaluating)
        raise _Crash(progress.step)


def test_a_run_killed_before_its_first_checkpoint_does_not_duplicate_step_zero(tmp_path):
    run_dir = tmp_path / "killed"
    for _ in range(2):  # killed twice after the first compiled call (step 50, no checkpoint yet)
        with pytest.raises(_Crash):
            engine.train_run(LEARN_CONFIG, run_dir, progress=_crash)
        assert checkpoint.available_steps(store.RunStore(run_dir)) == []
    assert _steps(run_dir) == [0]


def test_a_stop_between_call_boundaries_still_checkpoints(tmp_path):
    run_dir = tmp_path / "stopped"
    engine.train_run(LEARN_CONFIG, run_dir, stop_after_step=20)  # steps_per_call is 50: the stop splits a call
    assert checkpoint.available_steps(store.RunStore(run_dir)) == [20]


def test_a_stop_at_or_before_the_resume_step_trains_nothing(tmp_path):
    """Before, a second call with the same stop_after_step trained to the end."""
    run_dir = tmp_path / "stopped"
    for _ in range(2):
        assert engine.train_run(LEARN_CONFIG, run_dir, stop_after_step=100) is None
        assert checkpoint.available_steps(store.RunStore(run_dir)) == [100] and max(_steps(run_dir)) == 100


def test_a_group_needs_one_distinct_folder_per_config(tmp_path):
    with pytest.raises(ValueError, match=r"one run folder per config: 2 config\(s\), 1 folder"):
        engine.GroupTrainer([LEARN_CONFIG, LEARN_CONFIG], [tmp_path / "a"])
    with pytest.raises(ValueError, match="run folders must be distinct"):
        engine.GroupTrainer([LEARN_CONFIG, LEARN_CONFIG], [tmp_path / "a", tmp_path / "a"])


def test_an_exception_mid_training_leaves_the_run_pending_not_running(tmp_path):
    """Ctrl-C (or any error) inside the loop: the run folder no longer claims a running process."""
    cfg = config.run_config_from_dict({**TINY_CONFIG, "train": {**TINY_CONFIG["train"], "steps": 40,
                                                                "steps_per_call": 10}})

    def interrupt(progress):
        if progress.step >= 20:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        engine.train_run(cfg, tmp_path / "run", progress=interrupt)
    run = store.RunStore(tmp_path / "run")
    assert not (run.dir / names.HEARTBEAT_FILE).exists() and run.state() == names.PENDING


def test_a_running_mark_left_by_a_dead_process_of_this_host_reads_pending(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    run = store.RunStore(tmp_path / "run")
    run.dir.mkdir()
    store.write_json(run.dir / names.HEARTBEAT_FILE, {"host": socket.gethostname(), "pid": int(dead.stdout)})
    assert run.state() == names.PENDING
    run.mark_running()  # this process: alive
    assert run.state() == names.RUNNING
    store.write_json(run.dir / names.HEARTBEAT_FILE, {"host": "another-host", "pid": int(dead.stdout)})
    assert run.state() == names.RUNNING  # another host's process cannot be checked from here: trusted


def test_rates_and_time_left_exclude_compilation(monkeypatch, tmp_path):
    """A fake clock where compiling takes 1000 s and everything else 1 s per reading: the rates and the time left
    must come from the training calls alone, and the compilation time is reported apart."""
    clock = [0.0]

    def tick():
        clock[0] += 1.0
        return clock[0]

    real_make = engine.training.make_train_chunk

    class SlowCompile:
        def __init__(self, jitted):
            self.jitted = jitted

        def lower(self, *args):
            lowered = self.jitted.lower(*args)

            class Lowered:
                def compile(self):
                    clock[0] += 1000.0
                    return lowered.compile()
            return Lowered()

    monkeypatch.setattr(engine.time, "perf_counter", tick)
    monkeypatch.setattr(engine.training, "make_train_chunk", lambda *a, **k: SlowCompile(real_make(*a, **k)))
    cfg = LEARN_CONFIG.replace(train={"steps": 100, "steps_per_call": 50}, eval={"interval": 100},
                               checkpoint={"interval": 100})
    reports = []
    engine.train_run(cfg, tmp_path / "run", progress=reports.append)
    phases = [p.phase for p in reports]
    assert phases[:2] == [engine.EVALUATING, engine.COMPILING] and engine.TRAINING in phases
    first = next(p for p in reports if p.phase == engine.TRAINING)
    assert first.compile_seconds >= 1000
    assert first.steps_per_second > 1, first  # 50 steps over a few ticks, not over 1000 s
    assert first.seconds_left < 100, first  # 50 steps left at the same rate


@pytest.mark.parametrize("strategy", ["map", "vmap"])
def test_a_member_alone_matches_the_same_member_in_a_group(tmp_path, strategy):
    """Group size does not change results: bit for bit under `map` (train loss included), to float32 rounding
    under `vmap` (the engine docstring says why)."""
    base = config.run_config_from_dict(TINY_SWEEP).replace(
        train={"steps": 60, "steps_per_call": 10, "ensemble_strategy": strategy}, checkpoint={"interval": 60})
    cfgs = [base.replace(data={"num_tasks": m}, train={"seed": s}) for m, s in ((2, 0), (16, 1), (0, 0))]
    group_dirs = [tmp_path / "group" / c.run_name for c in cfgs]
    engine.GroupTrainer(cfgs, group_dirs).run()
    for cfg, group_dir in list(zip(cfgs, group_dirs))[1:2]:  # the middle member, trained alone
        alone_dir = tmp_path / "alone" / cfg.run_name
        engine.train_run(cfg, alone_dir)
        together, alone = store.RunStore(group_dir).metrics(), store.RunStore(alone_dir).metrics()
        if strategy == "map":
            assert together == alone, cfg.run_name
            continue
        for a, b in zip(together, alone):
            assert (a["train_loss"] is None) == (b["train_loss"] is None)
            assert a["train_loss"] is None or a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
            for key in a["mean"]:
                assert a["mean"][key] == pytest.approx(b["mean"][key], rel=1e-5, abs=1e-7), (a["step"], key)


# The tiny sweep's model and data (conftest.TINY_SWEEP: D = 2, K = 4, one layer of width 16), one run of 60 steps.
SMALL_RUN = config.run_config_from_dict({k: v for k, v in TINY_SWEEP.items() if k != "sweep"})


def test_a_checkpoint_interval_off_the_call_boundaries_is_honoured(tmp_path):
    """Calls of 20 steps, evaluations every 60, checkpoints every 30: the call ends at 30 for its checkpoint (else
    a kill loses up to a whole evaluation interval, whatever checkpoint.interval says)."""
    cfg = SMALL_RUN.replace(train={"steps_per_call": 20}, eval={"interval": 60},
                            checkpoint={"interval": 30, "keep": 5})
    engine.train_run(cfg, tmp_path / "run")
    assert checkpoint.available_steps(store.RunStore(tmp_path / "run")) == [30, 60]


def test_each_records_train_loss_averages_the_steps_since_the_previous_record(tmp_path):
    """The training loss at step 40 of a run evaluated every 40 steps is the mean of the two that a run evaluated
    every 20 steps records at 20 and 40 (the same training: batches depend on seed and step only)."""
    def losses(interval):
        cfg = SMALL_RUN.replace(train={"steps": 40}, eval={"interval": interval}, checkpoint={"interval": 40})
        engine.train_run(cfg, tmp_path / str(interval))
        return {r["step"]: r["train_loss"] for r in store.RunStore(tmp_path / str(interval)).metrics()}

    every20, every40 = losses(20), losses(40)
    assert every20[20] != pytest.approx(every20[40], rel=1e-3)  # the halves differ, so the check below can fail
    assert every40[40] == pytest.approx((every20[20] + every20[40]) / 2, rel=1e-5)


def test_the_seeds_of_a_group_get_their_own_initial_parameters_and_pool(tmp_path):
    """Two seeds of one cell trained in one group differ at step 0 in the model (its L/D on the T_true sequences
    every model shares: the initial parameters) and in the pool (dMMSE's L/D on each seed's T_pretrain set): else
    the seed spread, and the threshold intervals resampling seeds, measure nothing."""
    cfgs = [SMALL_RUN.replace(data={"num_tasks": 2}, train={"steps": 20, "seed": seed}) for seed in (0, 1)]
    engine.GroupTrainer(cfgs, [tmp_path / str(c.train.seed) for c in cfgs], print_fn=lambda *_: None).run()
    first = [store.RunStore(tmp_path / str(c.train.seed)).metrics()[0]["mean"] for c in cfgs]
    for key in (names.loss_key(names.TRUE, names.PT), names.loss_key(names.PRETRAIN, names.DMMSE)):
        assert first[0][key] != pytest.approx(first[1][key], rel=1e-4), key

