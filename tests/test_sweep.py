"""Sweeps: grid expansion and shards, ensembles equal single runs, resume after a kill (threshold statistics:
test_threshold.py)."""

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from icl_regression import config, engine, names, results, stopping, sweep, threshold
from icl_regression.store import RunStore, StoreError
from test_store import run_with_records

REPO = Path(__file__).resolve().parents[1]


def tiny_sweep_config(num_tasks=(2, 16, "inf"), batch_sizes=(16,), seeds=(0,), steps=60):
    cfg = {
        "data": {"dim": 2, "context_len": 4},
        "model": {"num_layers": 1, "d_model": 16, "num_heads": 2},
        "train": {"steps": steps, "batch_size": 16, "steps_per_call": 10, "learning_rate": 3e-3},
        "eval": {"interval": 20, "num_sequences": 64, "batch_size": 64, "num_bootstrap": 20},
        "checkpoint": {"interval": 20},
        "sweep": {"grid": {"data": {"num_tasks": num_tasks}, "train": {"batch_size": batch_sizes, "seed": seeds}}},
    }
    return cfg


def test_grid_expands_every_combination_once(tmp_path):
    cells = sweep.expand(tiny_sweep_config(batch_sizes=(16, 32), seeds=(0, 1)), tmp_path)
    assert len(cells) == 3 * 2 * 2
    assert len({c.name for c in cells}) == len(cells)
    assert {(c.config.data.num_tasks, c.config.train.batch_size, c.config.train.seed) for c in cells} == {
        (m, b, s) for m in (2, 16, 0) for b in (16, 32) for s in (0, 1)}


@pytest.mark.parametrize("count", [1, 2, 3, 5, 13])
def test_shards_cover_the_grid_exactly_once(tmp_path, count):
    cells = sweep.expand(tiny_sweep_config(batch_sizes=(16, 32), seeds=(0, 1)), tmp_path)
    taken = [c.name for i in range(count) for c in sweep.select(cells, (i, count))]
    assert sorted(taken) == sorted(c.name for c in cells)


@pytest.mark.parametrize("text", ["3/3", "-1/2", "a/b", "2", "0/0"])
def test_bad_shard_is_a_clear_error(text):
    with pytest.raises(config.ConfigError, match="shard"):
        sweep.parse_shard(text)


def test_cells_at_different_resume_steps_are_planned_in_different_groups(tmp_path):
    """A group resumes from the newest checkpoint all its members share: a cell checkpointed at step 40 among cells
    at step 0 would be retrained from 0 (and its checkpoints set aside). Its own group trains its last 20 steps."""
    cells = sweep.expand(tiny_sweep_config(), tmp_path)
    run_with_records(cells[0].run_dir, (0, 20, 40), (40,), cells[0].config)  # where a kill at step 40 leaves it
    groups = sweep.plan_groups(cells)
    assert sorted(sorted(c.name for c in g) for g in groups) == sorted(
        [[cells[0].name], sorted(c.name for c in cells[1:])])
    assert sweep.plan_cost(groups)["model_steps"] == 20 + 60 + 60


def test_diverged_cells_are_finished_and_not_planned(tmp_path):
    cells = sweep.expand(tiny_sweep_config(), tmp_path)
    run = RunStore(cells[0].run_dir)
    run.init(cells[0].config.to_dict())
    run.write_summary({"status": names.DIVERGED, "step": 60})
    groups = sweep.plan_groups(cells)
    assert sorted(c.name for g in groups for c in g) == sorted(c.name for c in cells[1:])
    assert sweep.plan_cost(groups)["models"] == 2


def test_unknown_cell_name_is_a_clear_error(tmp_path):
    cells = sweep.expand(tiny_sweep_config(), tmp_path)
    with pytest.raises(config.ConfigError, match="no_such_cell"):
        sweep.select(cells, names_=["no_such_cell"])


def test_empty_grid_axis_is_a_clear_error(tmp_path):
    with pytest.raises(config.ConfigError, match="num_tasks"):
        sweep.expand(tiny_sweep_config(num_tasks=()), tmp_path)


def _renamed(cfg: dict, dotted: str, new_key: str) -> dict:
    """`cfg` with the key at `dotted` renamed to `new_key` (a typo in a config file)."""
    *parents, key = dotted.split(".")
    node = cfg
    for parent in parents:
        node = node[parent]
    node[new_key] = node.pop(key)
    return cfg


@pytest.mark.parametrize("dotted, typo, message", [
    ("sweep.grid", "gird", r"unknown config field sweep\.gird; did you mean sweep\.grid\? \(sweep has analysis, "),
    ("sweep.grid.data", "dat", r"unknown config field sweep\.grid\.dat; did you mean sweep\.grid\.data\? \(sweep\.grid "
                               r"has checkpoint, data, eval, model, train\)"),
    ("sweep.grid.data.num_tasks", "num_taks", r"unknown config field sweep\.grid\.data\.num_taks; did you mean "
                                              r"sweep\.grid\.data\.num_tasks\? \(sweep\.grid\.data has "),
    ("train", "trian", r"unknown config section trian; did you mean train\? \(the config has checkpoint, data, "),
], ids=["sweep.gird", "sweep.grid.dat", "sweep.grid.data.num_taks", "trian"])
def test_a_typo_in_a_config_file_is_refused_naming_the_key(tmp_path, dotted, typo, message):
    """Before, these collapsed the sweep to its base config (or dropped the section) without a word."""
    with pytest.raises(config.ConfigError, match=message):
        sweep.expand(_renamed(tiny_sweep_config(), dotted, typo), tmp_path)


@pytest.mark.parametrize("dotted, message", [
    ("sweep", r"sweep=3: sweep is a section; set one of its fields, e\.g\. sweep\.grid\.data\.num_tasks="),
    ("sweep.grid", r"sweep\.grid=3: sweep\.grid is a section; set one of its fields"),
    ("sweep.grid.data", r"sweep\.grid\.data=3: sweep\.grid\.data is a section; set one of its fields, e\.g\. "
                        r"sweep\.grid\.data\.dim="),
    ("data", r"data=3: data is a section; set one of its fields, e\.g\. data\.dim="),
], ids=["sweep", "sweep.grid", "sweep.grid.data", "data"])
def test_a_section_set_to_a_value_in_a_config_file_is_refused(tmp_path, dotted, message):
    cfg = tiny_sweep_config()
    *parents, key = dotted.split(".")
    node = cfg
    for parent in parents:
        node = node[parent]
    node[key] = 3
    with pytest.raises(config.ConfigError, match=message):
        sweep.expand(cfg, tmp_path)


def test_a_negative_max_group_size_is_refused(tmp_path):
    """Before, range(0, n, -1) planned no group: the sweep trained nothing and said nothing."""
    with pytest.raises(config.ConfigError, match=r"--max_group_size=-1: allowed: 0 \(all that fit a group\) or an "
                                                 r"integer >= 1"):
        sweep.run_sweep(tiny_sweep_config(), tmp_path, max_group_size=-1, print_fn=lambda *_: None)
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_a_cell_named_twice_is_selected_once(tmp_path):
    """Before, the second copy found the first one's claim and was reported as held by another live process."""
    cells = sweep.expand(tiny_sweep_config(), tmp_path)
    first, second = cells[0].name, cells[1].name
    assert [c.name for c in sweep.select(cells, names_=[second, first, second])] == [second, first]
    lines = []
    sweep.run_sweep(tiny_sweep_config(), tmp_path, cell_names=[first, first], dry_run=True, print_fn=lines.append)
    assert "1 in this selection, 1 to train in 1 group(s)" in lines[0], lines


def test_ensemble_equals_each_model_alone(tmp_path):
    cells = sweep.expand(tiny_sweep_config(num_tasks=(2, 16, "inf"), seeds=(0, 1)), tmp_path / "group")
    cells = cells[:3]
    engine.GroupTrainer([c.config for c in cells], [c.run_dir for c in cells]).run()
    for cell in cells:
        alone = engine.train_run(cell.config, tmp_path / "alone" / cell.name)
        together = RunStore(cell.run_dir).summary()
        for key in names.all_metric_keys():
            assert together["final"][key] == pytest.approx(alone["final"][key], rel=1e-4, abs=1e-6,
                                                           nan_ok=True), key


def test_diverging_cells_are_marked_and_do_not_stop_the_sweep(tmp_path):
    cfg = tiny_sweep_config(num_tasks=(2,), steps=20)
    cfg["train"]["learning_rate"] = 1e6
    assert sweep.run_sweep(cfg, tmp_path, print_fn=lambda *_: None)
    summary = results.summarize(tmp_path, sweep.run_dirs(cfg, tmp_path))
    index = json.loads((tmp_path / names.SWEEP_INDEX_FILE).read_text())
    assert [c["state"] for c in index["cells"]] == [names.DIVERGED]
    assert summary["cells"][0]["status"] == names.DIVERGED


def test_a_stop_during_the_last_call_still_ends_a_finished_sweep(tmp_path, monkeypatch):
    """A deadline met in the call that finished the last cell used to report 'stopped' and skip the summary."""
    cfg = tiny_sweep_config(num_tasks=(2,), steps=20)
    stop = stopping.Stop()
    report = sweep.ProgressPrinter.__call__

    def stop_at_the_last_step(printer, progress):
        if progress.phase == engine.TRAINING and progress.step == progress.total_steps:
            stop.request("a deadline during the last call")
        return report(printer, progress)

    monkeypatch.setattr(sweep.ProgressPrinter, "__call__", stop_at_the_last_step)
    lines = []
    assert sweep.run_sweep(cfg, tmp_path, print_fn=lines.append, stop=stop)
    assert stop and not any("stopped" in line for line in lines), lines


def test_claiming_a_cell_finished_meanwhile_leaves_no_running_mark(tmp_path):
    cfg = tiny_sweep_config(num_tasks=(2,), steps=20)
    assert sweep.run_sweep(cfg, tmp_path, print_fn=lambda *_: None)
    cells, held = sweep.expand(cfg, tmp_path), []
    assert sweep._claim(cells, held) == ([], []) and held == []
    assert not (cells[0].run_dir / names.HEARTBEAT_FILE).exists() and sweep.cell_state(cells[0]) == names.DONE


def test_dry_run_trains_nothing(tmp_path):
    lines = []
    assert sweep.run_sweep(tiny_sweep_config(), tmp_path, dry_run=True, print_fn=lines.append) is False
    assert "3 cells" in lines[0] and "model-steps" in lines[0]
    assert not (tmp_path / names.RUNS_DIR).exists()


def test_dry_run_of_a_paper_config_prints_its_h100_time_from_the_roofline_records(tmp_path):
    """A GPU config's dry run also gives an H100 time: its model-steps at the committed roofline records' predicted
    rates (paper_small: the small model at batch 256 and 512); a model no record matches says so."""
    from icl_regression import cli

    paper = cli.load_config(str(REPO / "experiments" / "configs" / "paper_small.py"))
    lines = []
    sweep.run_sweep(paper, tmp_path / "paper", dry_run=True, print_fn=lines.append)
    rates = {b: json.loads((sweep.ROOFLINE_DIR / f"small_B{b}_E22_float32.json").read_text())
             ["predicted_model_steps_per_s"] for b in (256, 512)}
    cells = sweep.expand(paper, tmp_path / "paper")
    seconds = sum(c.config.train.steps / rates[c.config.train.batch_size] for c in cells)
    assert lines[-1] == (f"[sweep] H100 time by roofline prediction (a lower bound, not a measurement; 4L d=64 B256 "
                         f"E22 float32, 4L d=64 B512 E22 float32): ~{stopping.format_duration(seconds)} for 2 of 2 "
                         "group(s)")
    lines.clear()
    sweep.run_sweep(tiny_sweep_config(), tmp_path / "tiny", dry_run=True, print_fn=lines.append)
    assert lines[-1].startswith("[sweep] H100 time: no roofline prediction in results/roofline matches these models")


def _write_config_file(path: Path, cfg: dict) -> Path:
    path.write_text("from icl_regression.config import base_config\n\ndef get_config():\n"  # works with or without
                    f"    return base_config().__class__({cfg!r})\n")  # ml_collections, like the shipped config files
    return path


def _sweep_cmd(config_file, workdir):
    return [sys.executable, str(REPO / "experiments" / "sweep.py"), f"--config={config_file}",
            f"--workdir={workdir}", "--figure=false"]


def test_killed_sweep_resumes_without_redoing_finished_cells(tmp_path):
    cfg = tiny_sweep_config(num_tasks=(2, "inf"), batch_sizes=(16, 32), steps=200)
    config_file = _write_config_file(tmp_path / "sweep_cfg.py", cfg)
    workdir = tmp_path / "sweep"
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.Popen(_sweep_cmd(config_file, workdir), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    index_path = workdir / names.SWEEP_INDEX_FILE
    deadline = time.time() + 240
    try:
        while time.time() < deadline:  # wait until the first group (2 cells) is done, then kill mid-sweep
            if index_path.exists():
                counts = json.loads(index_path.read_text())["counts"]
                if counts[names.DONE] >= 2:
                    break
            time.sleep(0.2)
        else:
            pytest.fail("the first group never finished")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    index = json.loads(index_path.read_text())
    done_before = {c["name"]: (workdir / c["run_dir"] / names.METRICS_FILE).read_text()
                   for c in index["cells"] if c["state"] == names.DONE}
    assert 2 <= len(done_before) < 4, "kill should land mid-sweep"

    rerun = subprocess.run(_sweep_cmd(config_file, workdir), env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    index = json.loads(index_path.read_text())
    assert index["counts"][names.DONE] == 4
    for name, text in done_before.items():  # finished cells were skipped, not retrained
        assert (workdir / names.RUNS_DIR / name / names.METRICS_FILE).read_text() == text
    for cell in index["cells"]:
        steps = [r["step"] for r in RunStore(workdir / cell["run_dir"]).metrics()]
        assert steps == sorted(set(steps)) == list(range(0, 201, 20))
    assert "threshold" in rerun.stdout
    summary = results.load_summary(workdir)
    assert summary["complete"] and len(summary["cells"]) == 4


def _run_files(run_dir: Path) -> tuple[str, dict]:
    """A run's metrics.jsonl text and its summary without the time it was written."""
    summary = RunStore(run_dir).summary()
    del summary["finished_at"]
    return (run_dir / names.METRICS_FILE).read_text(), summary


def test_a_sweep_stopped_off_an_evaluation_step_resumes_to_the_same_files(tmp_path):
    """The running train loss travels in the checkpoint: a record after the resume averages the same steps as
    an uninterrupted run's (before, it averaged only the steps since the checkpoint)."""
    cfg = tiny_sweep_config(num_tasks=(2, "inf"))  # 60 steps, evaluations every 20, calls of 10
    sweep.run_sweep(cfg, tmp_path / "whole", print_fn=lambda *_: None)
    cells = sweep.expand(cfg, tmp_path / "resumed")
    group = engine.GroupTrainer([c.config for c in cells], [c.run_dir for c in cells])
    assert not group.run(stop_after_step=50)  # checkpointed at 50, between the evaluations at 40 and 60
    sweep.run_sweep(cfg, tmp_path / "resumed", print_fn=lambda *_: None)
    for cell in cells:
        assert _run_files(cell.run_dir) == _run_files(tmp_path / "whole" / names.RUNS_DIR / cell.name), cell.name


def test_cpu_main_job_config_runs_reduced(tmp_path):
    """The README's main job, shrunk: same config file and grid axes (budgets, seeds), fewer steps, M values and
    sequences."""
    sys.path.insert(0, str(REPO / "experiments" / "configs"))
    try:
        import cpu_demo
    finally:
        sys.path.pop(0)
    cfg = cpu_demo.get_config()
    cfg.train.steps = 40
    cfg.train.steps_per_call = 20
    cfg.eval.interval = 20
    cfg.eval.num_sequences = 128
    cfg.eval.batch_size = 128
    cfg.eval.num_bootstrap = 20
    cfg.checkpoint.interval = 20
    cfg.sweep.grid.data.num_tasks = (2, 16, "inf")
    if "steps" in cfg.sweep.grid.train:  # N vs 2N budgets: the same ratio, 125× shorter
        cfg.sweep.grid.train.steps = tuple(steps // 125 for steps in cfg.sweep.grid.train.steps)
    num_seeds = len(cfg.sweep.grid.train.seed)
    assert sweep.run_sweep(cfg.to_dict(), tmp_path, print_fn=lambda *_: None)
    summary = results.summarize(tmp_path, sweep.run_dirs(cfg.to_dict(), tmp_path))
    for key in ("threshold_log2_num_tasks", "threshold_interval", "method", "cells", "crossing", "midpoint"):
        assert key in summary
    assert len(summary["cells"]) == len(sweep.expand(cfg.to_dict(), tmp_path)) == 3 * 2 * num_seeds
    assert num_seeds >= 3 and summary["num_seeds"] == num_seeds
    assert summary["interval_source"] == f"{num_seeds} seeds (t-calibrated) and evaluation sequences"
    row = summary["cells"][0]
    for key in (names.THRESHOLD_METRIC, names.delta_key(names.PRETRAIN, "pt_dmmse"),
                names.loss_key(names.TRUE, names.PT)):
        assert np.isfinite(row["final"][key])
    stored = json.loads((tmp_path / names.SWEEP_SUMMARY_FILE).read_text())
    assert stored["num_cells"] == len(summary["cells"])
    assert "M" in results.format_table(summary["cells"])


def test_progress_time_left_weights_groups_by_flops(monkeypatch):
    """A quarter of the FLOPs in 10 s leaves 30 s, though only half the model-steps remain (next group 3× dearer)."""
    clock = iter([0.0, 10.0])
    monkeypatch.setattr(sweep.time, "perf_counter", lambda: next(clock))
    lines = []
    # Group 1: 2 models × 100 steps at 1 FLOP per group step; group 2: 2 models × 100 steps at 3 FLOP.
    printer = sweep.ProgressPrinter(total_model_steps=400, total_flops=400, num_cells=4, print_fn=lines.append)
    printer.start_group(flops_per_step=1.0)
    printer(engine.Progress(step=100, total_steps=100, num_members=2, steps_per_second=10.0, steps_done=100))
    assert printer.done_flops == 100 and printer.done_model_steps == 200
    assert lines[-1].endswith("| 20 model-steps/s | ~0.5 min left")  # 300 FLOP left at 10 FLOP/s = 30 s


# --- Sweeps over more than M, budget and seed: each setting summarised and drawn on its own, never pooled. ---


def _two_width_sweep(tmp_path):
    cfg = tiny_sweep_config(num_tasks=(2, "inf"), seeds=(0, 1), steps=40)
    cfg["sweep"]["grid"]["model"] = {"d_model": (8, 16)}
    assert sweep.run_sweep(cfg, tmp_path, print_fn=lambda *_: None)
    return cfg, results.summarize(tmp_path, sweep.run_dirs(cfg, tmp_path))


def test_settings_are_summarised_apart_and_never_pooled(tmp_path):
    cfg, summary = _two_width_sweep(tmp_path)
    assert summary["method"] == results.PER_SETTING and summary["setting_fields"] == ["model.d_model"]
    assert results.settings_of(summary) == ["d=8", "d=16"]
    assert {r["setting"] for r in summary["cells"]} == {"d=8", "d=16"} and len(summary["cells"]) == 8
    for label in ("d=8", "d=16"):
        own = results.setting_summary(summary, label)
        assert len(own["cells"]) == 4 and {r["setting"] for r in own["cells"]} == {label}
        alone = threshold.estimate_thresholds(own["cells"])  # the same as analysing that setting's runs alone
        assert json.dumps(own["midpoint"], sort_keys=True) == json.dumps(alone["midpoint"], sort_keys=True)
        assert own["dynamics"]["per_num_tasks"][0]["runs"] == sorted(r["name"] for r in own["cells"]
                                                                     if r["num_tasks"] == 2)
    with pytest.raises(ValueError, match="same cell .* in different settings"):
        threshold.estimate_thresholds(summary["cells"])  # pooling the two widths is refused, not averaged
    text = results.format_threshold(summary)
    assert text.startswith("threshold: per setting (the runs differ in model.d_model") and "setting d=16:" in text
    assert "setting d=8:" in results.format_dynamics(summary)
    assert results.format_table(summary["cells"]).splitlines()[1].startswith("setting ")
    with pytest.raises(StoreError, match="setting 'd=32' is not in this sweep; it has 'd=8', 'd=16'"):
        results.setting_summary(summary, "d=32")


def test_settings_get_their_own_figures(tmp_path):
    from icl_regression import plotting

    _two_width_sweep(tmp_path)
    with pytest.warns(UserWarning, match="runs of 2 settings"):
        paths = plotting.write_all_figures(tmp_path)
    assert sorted(p.name for p in paths) == ["sweep_d=16.pdf", "sweep_d=16.png", "sweep_d=8.pdf", "sweep_d=8.png"]
    with pytest.raises(StoreError, match="differ in model.d_model; figures are drawn per setting"):
        plotting.write_dynamics_figure(tmp_path)
    assert [p.name for p in plotting.write_dynamics_figure(tmp_path, setting="d=16")] == ["dynamics_d=16.png",
                                                                                         "dynamics_d=16.pdf"]


def test_a_setting_is_what_varies_besides_the_cell_and_how_it_ran():
    base = config.RunConfig().to_dict()
    other = copy.deepcopy(base)
    other["checkpoint"]["interval"] *= 2  # how it ran: not a setting
    other["train"]["steps_per_call"] += 1
    other["train"]["seed"] += 1  # the cell's own coordinates: not a setting
    other["data"]["num_tasks"] = 7
    assert results.setting_fields([base, other]) == []
    other["data"]["dim"] += 1
    other["train"]["weight_decay"] = 0.1
    assert results.setting_fields([base, other]) == ["data.dim", "train.weight_decay"]
    assert results.setting_label(other, ["train.weight_decay", "data.dim"]) == f"D={other['data']['dim']}, wd=0.1"
    for field in results.CELL_FIELDS + results.EXECUTION_FIELDS:  # every name is a real config field
        section, name = field.split(".")
        assert name in base[section], field


def test_a_summary_that_pools_settings_is_refused_with_the_fix(tmp_path):
    """Summaries written before settings were summarised apart pooled them; reading one says how to redo it."""
    _two_width_sweep(tmp_path)
    path = tmp_path / names.SWEEP_SUMMARY_FILE
    pooled = json.loads(path.read_text())
    del pooled["settings"]
    path.write_text(json.dumps(pooled))
    with pytest.raises(StoreError, match="pools runs of different settings .* --summarize"):
        results.load_summary(tmp_path)


def test_a_hard_kill_between_checkpoint_intervals_resumes_from_the_wall_clock_checkpoint(tmp_path):
    """checkpoint.interval = the run's length (as in the CPU demo) leaves nothing to resume from after a kill -9
    mid-run, but the trainer also checkpoints once CHECKPOINT_EVERY_S of wall time has passed (0 here: every call);
    the resumed run's files equal an uninterrupted run's."""
    cfg = tiny_sweep_config(num_tasks=(2, "inf"))  # 60 steps, evaluations every 20, calls of 10
    cfg["checkpoint"]["interval"] = 60
    sweep.run_sweep(cfg, tmp_path / "whole", print_fn=lambda *_: None)
    cells = sweep.expand(cfg, tmp_path / "killed")

    def kill_at_step_50(progress):
        if progress.step == 50:
            raise KeyboardInterrupt  # stands in for kill -9: no stop handling, no final checkpoint

    group = engine.GroupTrainer([c.config for c in cells], [c.run_dir for c in cells], checkpoint_every_s=0.0)
    with pytest.raises(KeyboardInterrupt):
        group.run(progress=kill_at_step_50)
    assert all(max(checkpoint_steps(c.run_dir)) == 50 for c in cells)
    sweep.run_sweep(cfg, tmp_path / "killed", print_fn=lambda *_: None)
    for cell in cells:
        assert _run_files(cell.run_dir) == _run_files(tmp_path / "whole" / names.RUNS_DIR / cell.name), cell.name


def checkpoint_steps(run_dir):
    from icl_regression import checkpoint

    return checkpoint.available_steps(RunStore(run_dir))
