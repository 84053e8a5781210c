"""The results store never lies: damaged checkpoints and files are detected, reported in one line and repaired;
a changed sweep config is refused; divergence and runaway losses are recorded."""

import copy
import json
import re

import numpy as np
import pytest
from conftest import TINY_CONFIG, TINY_SWEEP
from flax import serialization

from icl_regression import checkpoint, config, engine, names, results, stopping, sweep, transport
from icl_regression.config import ConfigError
from icl_regression.store import RunStore, StoreError, read_json, write_json

RUN = config.run_config_from_dict(TINY_CONFIG).replace(
    train={"steps": 300}, eval={"interval": 100}, checkpoint={"interval": 100, "keep": 3})


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run: (its folder, its summary)."""
    run_dir = tmp_path_factory.mktemp("store") / RUN.run_name
    return run_dir, engine.train_run(RUN, run_dir)


def _stopped_at(tmp_path, step):
    run_dir = tmp_path / RUN.run_name
    assert engine.train_run(RUN, run_dir, stop_after_step=step) is None
    return run_dir


def _assert_same_result(summary, reference_summary):
    for key, value in reference_summary["final"].items():
        assert summary["final"][key] == pytest.approx(value, rel=1e-5, abs=1e-7, nan_ok=True), key


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_a_damaged_checkpoint_falls_back_to_the_previous_one_with_a_warning(reference, tmp_path, damage):
    run_dir = _stopped_at(tmp_path, 200)
    newest = run_dir / names.CHECKPOINT_DIR / "step_200.msgpack"
    newest.write_bytes(b"" if damage == "empty" else newest.read_bytes()[: newest.stat().st_size // 2])
    warnings = []
    summary = engine.train_run(RUN, run_dir, print_fn=warnings.append)
    assert len(warnings) == 1 and str(newest) in warnings[0] and "resuming from step 100" in warnings[0], warnings
    assert (newest.parent / "step_200.msgpack.corrupt").exists()  # kept for inspection, out of the way
    assert [r["step"] for r in RunStore(run_dir).metrics()] == [0, 100, 200, 300]
    _assert_same_result(summary, reference[1])


def test_with_every_checkpoint_damaged_the_run_restarts_from_step_zero(reference, tmp_path):
    run_dir = _stopped_at(tmp_path, 200)
    for path in (run_dir / names.CHECKPOINT_DIR).glob("*.msgpack"):
        path.write_bytes(b"\x00garbage")
    warnings = []
    summary = engine.train_run(RUN, run_dir, print_fn=warnings.append)
    assert len(warnings) == 2 and warnings[-1].endswith("resuming from step 0 (no older checkpoint)"), warnings
    assert [r["step"] for r in RunStore(run_dir).metrics()] == [0, 100, 200, 300]
    _assert_same_result(summary, reference[1])


def test_a_checkpoint_without_the_running_train_loss_still_resumes(reference, tmp_path):
    """A checkpoint written before the running train loss was saved (the state alone) resumes as it did then: the
    evaluations are unchanged, the next train loss averages the steps since the checkpoint."""
    run_dir = _stopped_at(tmp_path, 250)
    path = run_dir / names.CHECKPOINT_DIR / "step_250.msgpack"
    path.write_bytes(serialization.msgpack_serialize(serialization.msgpack_restore(path.read_bytes())["state"]))
    warnings = []
    summary = engine.train_run(RUN, run_dir, print_fn=warnings.append)
    assert warnings == [] and not list(path.parent.glob("*.corrupt"))
    assert [r["step"] for r in RunStore(run_dir).metrics()] == [0, 100, 200, 300]
    assert summary["final"] == reference[1]["final"]


def test_a_checkpoint_of_another_model_is_set_aside_like_a_damaged_one(reference, tmp_path):
    """Flax restores by name only: a checkpoint whose arrays have other shapes loaded, then failed inside the
    model on every resume."""
    run_dir = _stopped_at(tmp_path, 200)
    newest = run_dir / names.CHECKPOINT_DIR / "step_200.msgpack"
    saved = serialization.msgpack_restore(newest.read_bytes())
    block = saved["state"]["params"]["params"]["read_in"]
    block["kernel"] = np.zeros((block["kernel"].shape[0], 2 * block["kernel"].shape[1]), np.float32)  # wider
    newest.write_bytes(serialization.msgpack_serialize(saved))
    warnings = []
    summary = engine.train_run(RUN, run_dir, print_fn=warnings.append)
    assert len(warnings) == 1 and "from another model" in warnings[0] and "resuming from step 100" in warnings[0]
    assert (newest.parent / "step_200.msgpack.corrupt").exists()
    _assert_same_result(summary, reference[1])


def test_checkpoints_past_the_resume_step_are_set_aside_not_kept_in_place_of_new_ones(tmp_path):
    """A finished run whose record at step 100 is torn resumes from step 0. Its checkpoints at 200 and 300 used to
    stay and count among the newest `keep` = 2, so the new checkpoint at 100 was deleted as soon as written: a
    kill then lost all the retraining."""
    cfg = RUN.replace(checkpoint={"interval": 100, "keep": 2})
    run_dir = tmp_path / cfg.run_name
    finished = engine.train_run(cfg, run_dir)
    run = RunStore(run_dir)
    assert checkpoint.available_steps(run) == [200, 300]
    lines = (run_dir / names.METRICS_FILE).read_text().splitlines(keepends=True)
    (run_dir / names.METRICS_FILE).write_text("".join([lines[0], lines[1][:50], *lines[2:]]))  # step 100 torn
    run.invalidate()
    assert checkpoint.resume_step(run) == 0  # what the sweep's plan and its stop message now report
    assert engine.train_run(cfg, run_dir, stop_after_step=100) is None
    assert checkpoint.available_steps(run) == [100] and checkpoint.resume_step(run) == 100
    assert sorted(p.name for p in run.checkpoint_dir.glob("*.stale")) == ["step_200.msgpack.stale",
                                                                         "step_300.msgpack.stale"]  # not deleted
    assert engine.train_run(cfg, run_dir)["final"] == finished["final"]


def test_a_stop_before_a_finished_run_is_re_evaluated_keeps_its_final_record(tmp_path):
    """The final record used to be dropped before the stop was checked; the final checkpoint was then no longer
    covered by the metrics and the next call retrained the run."""
    run_dir = tmp_path / RUN.run_name
    finished = engine.train_run(RUN, run_dir)
    run = RunStore(run_dir)
    (run_dir / names.SUMMARY_FILE).unlink()
    stop = stopping.Stop()
    stop.request("test")
    assert engine.train_run(RUN, run_dir, stop=stop) is None
    assert [r["step"] for r in run.metrics()] == [0, 100, 200, 300] and checkpoint.resume_step(run) == 300
    redone = engine.train_run(RUN, run_dir)
    assert {k: v for k, v in redone.items() if k != "finished_at"} == {
        k: v for k, v in finished.items() if k != "finished_at"}
    assert [r["step"] for r in run.metrics()] == [0, 100, 200, 300]


def test_compressed_metrics_read_the_same_and_are_expanded_before_any_write(finished_sweep):
    """Committed results keep finished runs' metrics as metrics.jsonl.gz (4× smaller): every reader takes either,
    the summary's fingerprint does not change, and a run written again gets its plain file back."""
    workdir, cells = finished_sweep
    run_dirs = [c.run_dir for c in cells]
    before = {d: RunStore(d).metrics() for d in run_dirs}
    fingerprint = results.fingerprint(run_dirs)
    count, plain_bytes, packed_bytes = transport.compress_finished_metrics(workdir)
    assert count == len(cells) and packed_bytes < plain_bytes / 2
    assert not list(workdir.rglob(names.METRICS_FILE)) and len(list(workdir.rglob(names.METRICS_FILE_GZ))) == count
    assert {d: RunStore(d).metrics() for d in run_dirs} == before
    assert results.fingerprint(run_dirs) == fingerprint and not RunStore(run_dirs[0]).problems()
    assert transport.compress_finished_metrics(workdir)[0] == 0  # nothing left to do

    run = RunStore(run_dirs[0])
    run.truncate_metrics(20)  # what a resume does
    assert (run.dir / names.METRICS_FILE).exists() and not (run.dir / names.METRICS_FILE_GZ).exists()
    assert run.metrics() == [r for r in before[run.dir] if r["step"] <= 20]


def test_a_compressed_file_that_differs_from_the_plain_one_is_set_aside_not_deleted(finished_sweep):
    workdir, cells = finished_sweep
    transport.compress_finished_metrics(workdir)
    run = RunStore(cells[0].run_dir)
    records = run.metrics()
    (run.dir / names.METRICS_FILE).write_text(json.dumps(records[0], sort_keys=True) + "\n")  # another copy
    run.truncate_metrics(0)
    assert (run.dir / (names.METRICS_FILE_GZ + ".superseded")).exists() and not (run.dir / names.METRICS_FILE_GZ).exists()
    assert run.metrics() == records[:1]


def test_a_damaged_compressed_metrics_file_is_reported_and_redone(finished_sweep):
    workdir, cells = finished_sweep
    transport.compress_finished_metrics(workdir)
    packed = cells[0].run_dir / names.METRICS_FILE_GZ
    packed.write_bytes(packed.read_bytes()[:40])
    assert RunStore(cells[0].run_dir).problems()[0] == "metrics.jsonl has an unreadable line after step none"
    before = RunStore(cells[0].run_dir).summary()
    assert sweep.run_sweep(TINY_SWEEP, workdir, print_fn=lambda *_: None)
    assert [r["step"] for r in RunStore(cells[0].run_dir).metrics()] == [0, 20, 40, 60]
    assert (cells[0].run_dir / (names.METRICS_FILE_GZ + ".corrupt")).exists()
    _assert_same_result(RunStore(cells[0].run_dir).summary(), before)


@pytest.fixture
def finished_sweep(tiny_sweep_dir, tmp_path):
    """A private copy of the finished tiny sweep (the session's copy stays intact)."""
    import shutil

    workdir = tmp_path / "sweep"
    shutil.copytree(tiny_sweep_dir, workdir)
    return workdir, sweep.expand(TINY_SWEEP, workdir)


def test_a_torn_last_line_of_a_finished_cell_is_reported_and_repaired(finished_sweep):
    workdir, cells = finished_sweep
    victim = cells[0].run_dir / names.METRICS_FILE
    before = RunStore(cells[0].run_dir).summary()
    text = victim.read_text()
    victim.write_text(text[: len(text) - 40])  # the last record loses its end
    problems = RunStore(cells[0].run_dir).problems()
    assert problems == ["metrics.jsonl has an unreadable line after step 40",
                        "metrics.jsonl lacks the evaluations at steps [60]"]
    summary = results.summarize(workdir, [c.run_dir for c in cells])  # never summarised from partial data
    assert cells[0].name in summary["damaged_cells"] and not summary["complete"]
    assert cells[0].name not in {row["name"] for row in summary["cells"]}

    lines = []
    assert sweep.run_sweep(TINY_SWEEP, workdir, print_fn=lines.append)
    summary = results.summarize(workdir, sweep.run_dirs(TINY_SWEEP, workdir))
    assert any(line.startswith(f"[sweep] {cells[0].name}: metrics.jsonl has an unreadable line") for line in lines)
    assert summary["complete"] and not summary["damaged_cells"]
    assert [r["step"] for r in RunStore(cells[0].run_dir).metrics()] == [0, 20, 40, 60]
    _assert_same_result(RunStore(cells[0].run_dir).summary(), before)


@pytest.mark.parametrize("damage, said", [("deleted", "is missing"), ("truncated", "is damaged (not valid JSON)")],
                         ids=["deleted", "truncated"])
def test_a_deleted_or_damaged_summary_is_redone_from_the_final_checkpoint(finished_sweep, damage, said):
    workdir, cells = finished_sweep
    run = RunStore(cells[1].run_dir)
    before = run.summary()
    path = run.dir / names.SUMMARY_FILE
    if damage == "deleted":
        path.unlink()
    else:
        path.write_text(path.read_text()[:100])
    assert run.state() == names.PENDING
    lines = []
    assert sweep.run_sweep(TINY_SWEEP, workdir, print_fn=lines.append)
    summary = results.summarize(workdir, sweep.run_dirs(TINY_SWEEP, workdir))
    assert f"[sweep] {run.name}: summary.json {said} though training finished; re-evaluating it from its " \
           "final checkpoint" in lines, lines
    assert summary["complete"] and run.state() == names.DONE
    after = run.summary()
    assert after["train_loss"] == before["train_loss"]  # kept from the stored final record, not retrained
    _assert_same_result(after, before)
    assert [r["step"] for r in run.metrics()] == [0, 20, 40, 60]


@pytest.mark.parametrize("content", [b'{"platform": "cp', b"", b'{"a": "\xff"}'],
                         ids=["truncated", "empty", "not utf-8"])
def test_a_file_that_is_not_valid_json_is_a_store_error_naming_it(tmp_path, content):
    """A StoreError is reported by the entry points as one line (before: a JSONDecodeError traceback)."""
    path = tmp_path / names.SWEEP_RATE_FILE
    path.write_bytes(content)
    with pytest.raises(StoreError, match=rf"^{re.escape(str(path))} is not valid JSON \(.+\); remove or restore it$"):
        read_json(path)


def test_a_path_that_cannot_be_written_is_a_store_error_naming_it(tmp_path):
    """A file where a folder should be, or a folder where the file should be (before: an OSError traceback)."""
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for target in (a_file / "x.json", a_file / "sub" / "x.json"):
        with pytest.raises(StoreError, match=rf"^cannot write {re.escape(str(target))}: {re.escape(str(a_file))} is "
                                             "a regular file"):
            write_json(target, {})
    with pytest.raises(StoreError, match=rf"^cannot write {re.escape(str(tmp_path))}: it is a folder"):
        write_json(tmp_path, {})
    assert a_file.read_text() == "x" and [p.name for p in tmp_path.iterdir()] == ["a_file"]


def test_a_changed_sweep_config_is_refused_naming_the_fields_unless_extended(finished_sweep):
    workdir, _ = finished_sweep
    changed = copy.deepcopy(TINY_SWEEP)
    changed["train"]["steps"] = 80
    changed["sweep"]["grid"]["data"]["num_tasks"] = (2, 8, 16, "inf")
    with pytest.raises(ConfigError, match=r"differs in sweep\.grid\.data\.num_tasks, train\.steps\); .*--extend"):
        sweep.run_sweep(changed, workdir, dry_run=True, print_fn=lambda *_: None)
    sweep.run_sweep(changed, workdir, dry_run=True, extend=True, print_fn=lambda *_: None)  # a plan only
    assert sweep.config_differences(sweep.stored_config(workdir), TINY_SWEEP) == []  # dry run records nothing
    history = [json.loads(line) for line in (workdir / names.SWEEP_CONFIG_HISTORY_FILE).read_text().splitlines()]
    assert len(history) == 1
    assert sweep.config_differences(TINY_SWEEP, changed) == ["sweep.grid.data.num_tasks", "train.steps"]


def test_divergence_is_recorded_with_step_reason_and_last_finite_loss(tmp_path):
    cfg = RUN.replace(train={"steps": 100, "learning_rate": 1e6, "schedule": "constant", "steps_per_call": 10},
                      eval={"interval": 50}, checkpoint={"interval": 50})
    lines = []
    summary = engine.train_run(cfg, tmp_path / "run", print_fn=lines.append)
    info = summary[names.DIVERGENCE]
    assert summary["status"] == names.DIVERGED and 1 <= info["step"] <= 100
    assert info["reason"] in (names.NONFINITE_LOSS, names.NONFINITE_GRADIENT)
    assert info["last_finite_loss"] is None or np.isfinite(info["last_finite_loss"])
    assert any(f"diverged at step {info['step']}: {info['reason']}" in line for line in lines), lines
    row = results.summary_rows([tmp_path / "run"])[0]
    assert row[names.DIVERGENCE] == info and row[names.RUNAWAY] in (True, False)


def test_a_divergence_on_the_first_step_after_a_resume_reports_the_loss_before_it(tmp_path):
    """The last finite loss travels in the checkpoint: a run stopped just before it diverges and resumed reports
    the same divergence as an uninterrupted one (not a null loss)."""
    cfg = RUN.replace(train={"steps": 100, "learning_rate": 1e3, "schedule": "constant", "steps_per_call": 10},
                      eval={"interval": 50}, checkpoint={"interval": 50})
    whole = engine.train_run(cfg, tmp_path / "whole", print_fn=lambda *_: None)[names.DIVERGENCE]
    assert whole["step"] >= 2 and whole["last_finite_loss"] is not None, whole  # this lr diverges after a few steps
    assert engine.train_run(cfg, tmp_path / "split", stop_after_step=whole["step"] - 1) is None
    resumed = engine.train_run(cfg, tmp_path / "split", print_fn=lambda *_: None)[names.DIVERGENCE]
    assert resumed == whole


def test_the_divergence_step_is_the_step_whose_update_was_refused(tmp_path):
    """A run stopped one step before the reported divergence step has not diverged; one stopped at it has."""
    cfg = RUN.replace(train={"steps": 100, "learning_rate": 1e3, "schedule": "constant", "steps_per_call": 10},
                      eval={"interval": 50}, checkpoint={"interval": 50})
    step = engine.train_run(cfg, tmp_path / "whole", print_fn=lambda *_: None)[names.DIVERGENCE]["step"]
    assert step >= 2
    for stop_at, diverged in ((step - 1, False), (step, True)):
        run_dir = tmp_path / f"stopped_at_{stop_at}"
        assert engine.train_run(cfg, run_dir, stop_after_step=stop_at, print_fn=lambda *_: None) is None
        assert (RunStore(run_dir).divergence() is not None) == diverged, stop_at


def test_figures_never_draw_a_stale_summary(finished_sweep):
    import subprocess
    import sys

    from clitools import ENV, REPO

    workdir, cells = finished_sweep
    assert results.stale_summary(workdir) is None
    for cell, script in zip(cells, ("all.py", "sweep.py")):  # every figure reads the sweep through load_sweep
        (cell.run_dir / names.SUMMARY_FILE).unlink()  # the runs change after the summary was written
        assert "changed since sweep_summary.json was written" in results.stale_summary(workdir)
        done = subprocess.run([sys.executable, str(REPO / "experiments" / "figures" / script),
                               f"--workdir={workdir}"], env=ENV, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "re-summarising" in done.stdout, script
        summary = results.load_summary(workdir)
        assert results.stale_summary(workdir) is None and not summary["complete"]
        assert cell.name not in {row["name"] for row in summary["cells"]}


def test_a_summary_written_before_fingerprints_is_not_called_stale(finished_sweep):
    workdir, _ = finished_sweep
    summary = results.load_summary(workdir)
    del summary["fingerprint"]
    (workdir / names.SWEEP_SUMMARY_FILE).write_text(json.dumps(summary))
    assert results.stale_summary(workdir) is None


def test_a_runaway_loss_is_flagged_in_the_summary(tiny_config):
    zero = engine.predict_zero_loss(tiny_config)
    record = {"step": 400, "train_loss": 1.0, "diverged": False, "per_position": {},
              "mean": {names.loss_key(names.TRUE, names.PT): 101 * zero}}
    assert engine._summary(tiny_config, record, {}, None)[names.RUNAWAY] is True
    record["mean"][names.loss_key(names.TRUE, names.PT)] = 99 * zero
    assert engine._summary(tiny_config, record, {}, None)[names.RUNAWAY] is False


def test_a_resume_from_a_checkpoint_sets_aside_only_the_checkpoints_past_it(tmp_path):
    """The same as a resume from step 0 (above), for a resume that restores a checkpoint: a finished run whose record
    at step 200 is torn resumes from its checkpoint at 100, and the ones at 200 and 300 are set aside at once (a
    stop right after the restore already finds them so)."""
    run_dir = tmp_path / RUN.run_name
    finished = engine.train_run(RUN, run_dir)
    run = RunStore(run_dir)
    assert checkpoint.available_steps(run) == [100, 200, 300]
    lines = (run_dir / names.METRICS_FILE).read_text().splitlines(keepends=True)
    (run_dir / names.METRICS_FILE).write_text("".join([*lines[:2], lines[2][:50], *lines[3:]]))  # step 200 torn
    run.invalidate()
    stop = stopping.Stop()
    stop.request("test")
    assert engine.train_run(RUN, run_dir, stop=stop) is None
    assert checkpoint.available_steps(run) == [100] and checkpoint.resume_step(run) == 100
    assert sorted(p.name for p in run.checkpoint_dir.glob("*.stale")) == ["step_200.msgpack.stale",
                                                                         "step_300.msgpack.stale"]
    assert engine.train_run(RUN, run_dir)["final"] == finished["final"]


def run_with_records(run_dir, steps, checkpoints=(), cfg=RUN):
    """A run folder of `cfg` (by default RUN: evaluations every 100 of 300 steps) with records at `steps` and
    placeholder checkpoint files at `checkpoints` (what resuming and planning read is which steps exist)."""
    run = RunStore(run_dir)
    run.init(cfg.to_dict())
    for step in steps:
        run.append_metrics({"step": step, "mean": {}})
    run.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    for step in checkpoints:
        (run.checkpoint_dir / f"step_{step}.msgpack").write_bytes(b"x")
    return run


def test_the_covered_step_stops_before_the_first_missing_evaluation(tmp_path):
    """Records at 0 and 100, none at 200: a checkpoint at 200 is not covered (resuming from it would leave the
    evaluation at 200 missing for good), the one at 100 is."""
    run = run_with_records(tmp_path / "run", (0, 100), checkpoints=(100, 200))
    assert run.covered_step() == 199 and checkpoint.resume_step(run) == 100
    assert run_with_records(tmp_path / "all", (0, 100, 200, 300)).covered_step() == 300
    assert run_with_records(tmp_path / "none", ()).covered_step() == -1


def test_a_group_resumes_from_the_newest_checkpoint_every_members_records_cover(tmp_path):
    """Member a's records cover step 200, member b's only 100: the group resumes from 100, not 200."""
    a = run_with_records(tmp_path / "a", (0, 100, 200), checkpoints=(100, 200))
    b = run_with_records(tmp_path / "b", (0, 100), checkpoints=(100, 200))
    assert engine._resume_candidates([a, b]) == [100]


def test_a_file_is_replaced_never_overwritten_in_place(tmp_path):
    """A crash mid-write must leave the old file whole: the new bytes go to a temporary file renamed over the old
    one. A hard link to the old file keeps the old bytes only if the write was not in place."""
    import os

    path = tmp_path / "summary.json"
    write_json(path, {"old": 1})
    os.link(path, tmp_path / "old_link.json")
    write_json(path, {"new": 2})
    assert read_json(path) == {"new": 2} and read_json(tmp_path / "old_link.json") == {"old": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old_link.json", "summary.json"]  # no temporary left


def test_the_fingerprint_covers_each_runs_metrics_and_summary(tmp_path):
    """A sweep summary is stale when a run's metrics change, not only its summary (`results.stale_summary`)."""
    run = run_with_records(tmp_path / "run", (0, 100))
    write_json(run.dir / names.SUMMARY_FILE, {"status": names.DONE})
    before = results.fingerprint([run.dir])
    run.append_metrics({"step": 200, "mean": {}})
    after_metrics = results.fingerprint([run.dir])
    write_json(run.dir / names.SUMMARY_FILE, {"status": names.DIVERGED})
    assert len({before, after_metrics, results.fingerprint([run.dir])}) == 3
