"""Stopping long commands: a deadline or a signal at any moment checkpoints, leaves cells pending and exits 0.

The signal tests send real signals to real processes of the entry points (tiny configs, timeouts).
"""

import json
import re
import signal
from pathlib import Path

import pytest
from clitools import Process, run, script, write_tiny_sweep

from icl_regression import checkpoint, names, stopping
from icl_regression.config import ConfigError
from icl_regression.store import RunStore


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("25m", 1500), ("1.5h", 5400), ("45", 45), (" 2m ", 120),
                                           (".5h", 1800)])
def test_durations_parse(text, seconds):
    assert stopping.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "10x", "-5m", "0s", "1.2.3h", "m"])
def test_bad_durations_are_one_line_errors(text):
    with pytest.raises(ConfigError, match=r"--stop_after=.*allowed: .*90s, 25m, 1.5h"):
        stopping.parse_duration(text)


def test_a_deadline_stops_once_it_passes():
    now = [0.0]
    stop = stopping.Stop(10, clock=lambda: now[0])
    assert not stop and stop.reason is None
    now[0] = 10.0
    assert stop and stop.reason.startswith("deadline")


def _assert_stopped_cleanly(workdir: Path, code: int, output: str) -> dict:
    assert code == 0, output
    assert "Traceback" not in output and "Segmentation" not in output and "Fatal" not in output, output
    assert "resume with: python" in output and "--workdir=" in output.splitlines()[-1], output
    index = json.loads((workdir / names.SWEEP_INDEX_FILE).read_text())
    assert index["counts"][names.RUNNING] == 0, index["counts"]
    for cell in index["cells"]:
        run_dir = workdir / cell["run_dir"]
        assert not (run_dir / names.HEARTBEAT_FILE).exists(), run_dir
        if run_dir.exists():
            assert RunStore(run_dir).state() == cell["state"] != names.RUNNING
    return index


# (line to wait for, how many times, signal): during the first group's setup and compilation, in the middle of
# training, and during the second group's setup (the moment that ended in a segmentation fault before).
MOMENTS = {
    "setup": ("[sweep] evaluating step 0", 1, signal.SIGINT),
    "training": ("| group step", 2, signal.SIGTERM),
    "between_groups": ("[sweep] evaluating step 0", 2, signal.SIGINT),
}


@pytest.mark.parametrize("moment", sorted(MOMENTS))
def test_a_signal_at_any_moment_stops_cleanly(tmp_path, moment):
    text, count, signum = MOMENTS[moment]
    config_file = write_tiny_sweep(tmp_path / "sweep_cfg.py", steps=400 if moment == "between_groups" else 3000)
    workdir = tmp_path / "sweep"
    process = Process([script("sweep.py"), f"--config={config_file}", f"--workdir={workdir}", "--figure=false"])
    process.wait_for(text, count=count)
    process.send(signum)
    code, output = process.finish(timeout=90)
    index = _assert_stopped_cleanly(workdir, code, output)
    assert f"signal {signum.name}" in output
    assert index["counts"][names.PENDING] >= 2  # the group in flight (at least) is left pending
    if moment == "training":  # the group in flight was checkpointed where it stopped
        stopped_at = {max(checkpoint.available_steps(RunStore(workdir / c["run_dir"])), default=0)
                      for c in index["cells"] if c["batch_size"] == 16}
        assert len(stopped_at) == 1 and stopped_at.pop() > 0, output


def test_a_second_ctrl_c_stops_at_once(tmp_path):
    config_file = write_tiny_sweep(tmp_path / "sweep_cfg.py", steps=100_000)
    workdir = tmp_path / "sweep"
    process = Process([script("sweep.py"), f"--config={config_file}", f"--workdir={workdir}", "--figure=false"])
    process.wait_for("| group step")
    process.send(signal.SIGINT)
    process.wait_for("SIGINT: stopping after the compiled call")
    process.send(signal.SIGINT)
    code, output = process.finish(timeout=30)
    assert code == 128 + signal.SIGINT, output
    assert "SIGINT again: stopping now" in output and "Traceback" not in output


def test_stop_after_exits_zero_and_the_same_command_finishes_the_sweep(tmp_path):
    config_file = write_tiny_sweep(tmp_path / "sweep_cfg.py", steps=200, checkpoint=100)
    workdir = tmp_path / "sweep"
    command = [script("sweep.py"), f"--config={config_file}", f"--workdir={workdir}", "--figure=false"]
    stopped = run(command + ["--stop_after=1s"])  # the deadline passes while the first group is set up
    output = stopped.stdout + stopped.stderr
    index = _assert_stopped_cleanly(workdir, stopped.returncode, output)
    assert "stopped (deadline --stop_after=1 s)" in output
    assert index["counts"][names.DONE] == 0
    finished = run(command)
    assert finished.returncode == 0, finished.stderr[-2000:]
    index = json.loads((workdir / names.SWEEP_INDEX_FILE).read_text())
    assert index["counts"][names.DONE] == 4
    for cell in index["cells"]:
        steps = [r["step"] for r in RunStore(workdir / cell["run_dir"]).metrics()]
        assert steps == list(range(0, 201, 20)), cell["name"]


def test_train_py_on_ctrl_c_writes_the_checkpoint_it_names(tmp_path):
    config_file = write_tiny_sweep(tmp_path / "cfg.py", steps=100_000, checkpoint=50_000)
    process = Process([script("train.py"), f"--config={config_file}", f"--workdir={tmp_path / 'single'}"])
    assert "compiling" in process.wait_for("compiling the training step")
    assert process.wait_for("steps/s").startswith("step ")
    process.send(signal.SIGINT)
    code, output = process.finish(timeout=60)
    assert code == 0 and "Traceback" not in output, output
    last = output.splitlines()[-1]
    match = re.search(r"checkpoint at step (\d+) in (\S+)/checkpoints; resume with: python \S*train.py", last)
    assert match, output
    run_dir = Path(match.group(2))
    assert checkpoint.available_steps(RunStore(run_dir)) == [int(match.group(1))]
    assert RunStore(run_dir).state() == names.PENDING
    assert "evaluating step 0" in output
    progress = [line for line in output.splitlines() if line.startswith("step ")]
    assert all(re.search(r"steps/s \| ~.* left \| setup and compilation [\d.]+ s", line) for line in progress)
