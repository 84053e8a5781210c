"""Several processes on one sweep folder: claims keep a run folder to one live process; multi-host for real.

Every test here runs real processes (the sweep entry point, or a claim held by a child process), with timeouts.
"""

import json
import socket
import subprocess
import sys
import textwrap

from clitools import ENV, REPO, Process, script, write_tiny_sweep

from icl_regression import names, sweep
from icl_regression.store import RunStore, expected_eval_steps

STEPS = 200


def _steps(run_dir):
    return [r["step"] for r in RunStore(run_dir).metrics()]


def _assert_every_cell_trained_once(workdir, cells):
    for cell in cells:
        assert RunStore(cell.run_dir).state() == names.DONE, cell.name
        assert _steps(cell.run_dir) == expected_eval_steps(STEPS, 20), cell.name  # no step twice, none missing


def test_two_processes_on_one_folder_never_train_a_cell_twice(tmp_path):
    config_file = write_tiny_sweep(tmp_path / "cfg.py", steps=STEPS, checkpoint=100)
    workdir = tmp_path / "sweep"
    command = [script("sweep.py"), f"--config={config_file}", f"--workdir={workdir}", "--figure=false"]
    first, second = Process(command), Process(command)
    outputs = [process.finish(timeout=240) for process in (first, second)]
    for code, output in outputs:
        assert code == 0, output
    joined = "\n".join(output for _, output in outputs)
    assert "another live process trains them" in joined, joined
    cells = sweep.expand(_load(config_file), workdir)
    _assert_every_cell_trained_once(workdir, cells)
    index = json.loads((workdir / names.SWEEP_INDEX_FILE).read_text())
    assert index["counts"][names.DONE] == 4
    history = (workdir / names.SWEEP_CONFIG_HISTORY_FILE).read_text().splitlines()
    assert len(history) == 1  # both processes started with one config: recorded once


def _load(config_file):
    from icl_regression import cli

    return cli.load_config(str(config_file))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_multihost_processes_share_a_sweep_and_equal_one_process(tmp_path):
    """Two processes joined by jax.distributed.initialize on localhost (no cross-process collectives are needed:
    each host trains its own cells, here one compiled group each) against one process alone."""
    config_file = write_tiny_sweep(tmp_path / "cfg.py", steps=STEPS, checkpoint=100)
    multi, single = tmp_path / "multi", tmp_path / "single"
    port = _free_port()
    hosts = [Process([script("sweep.py"), f"--config={config_file}", f"--workdir={multi}", "--figure=false",
                      "--multihost", f"--coordinator_address=localhost:{port}", "--num_processes=2",
                      f"--process_id={i}"]) for i in range(2)]
    alone = Process([script("sweep.py"), f"--config={config_file}", f"--workdir={single}", "--figure=false"])
    results = [process.finish(timeout=300) for process in (*hosts, alone)]
    for code, output in results:
        assert code == 0, output
    for code, output in results[:2]:
        assert "2 in this selection, 2 to train in 1 group(s)" in output, output
    cells = sweep.expand(_load(config_file), multi)
    _assert_every_cell_trained_once(multi, cells)
    for cell in cells:
        assert (cell.run_dir / names.METRICS_FILE).read_bytes() == (
            single / names.RUNS_DIR / cell.name / names.METRICS_FILE).read_bytes(), cell.name
    # Only a process that sees every cell finished summarises: the summary is never one host's partial view.
    summary = json.loads((multi / names.SWEEP_SUMMARY_FILE).read_text())
    assert summary["complete"] and len(summary["cells"]) == len(cells)
    waited = [output for _, output in results[:2] if "the summary and figures come from" in output]
    assert len(waited) <= 1


def test_multihost_processes_wait_for_each_other_at_exit(monkeypatch):
    """No program spans hosts, so they finish at different times; JAX's shutdown barrier (300 s by default) would
    abort every host, those still training included, once one has waited that long."""
    from icl_regression import parallel

    calls = []
    monkeypatch.setattr(parallel.jax.distributed, "initialize", lambda **kwargs: calls.append(kwargs))
    assert parallel.initialize_multihost((0, 1), num_processes=1, process_id=0) == (0, 1)
    assert calls == [{"shutdown_timeout_seconds": parallel.SHUTDOWN_TIMEOUT_S, "num_processes": 1, "process_id": 0}]
    assert parallel.SHUTDOWN_TIMEOUT_S >= 24 * 3600


HOLD = textwrap.dedent("""
    import sys, time
    from icl_regression.store import RunStore
    claim = RunStore(sys.argv[1]).claim()
    print("held" if claim else "refused", flush=True)
    time.sleep(float(sys.argv[2]))
""")


def test_a_claim_is_exclusive_while_its_process_lives_and_free_once_it_dies(tmp_path):
    run = RunStore(tmp_path / "run")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run.dir), "60"], env=ENV, cwd=REPO,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert run.state() == names.RUNNING
        assert run.claim() is None  # a live process holds it
        assert RunStore(run.dir).holder()["pid"] == holder.pid
    finally:
        holder.kill()  # SIGKILL: no cleanup at all, the RUNNING mark stays behind
        holder.wait()
    assert (run.dir / names.HEARTBEAT_FILE).exists()
    assert run.state() == names.PENDING  # the kernel released the dead process's lock
    claim = run.claim()
    assert claim is not None and run.state() == names.RUNNING
    claim.release()
    assert run.state() == names.PENDING and not (run.dir / names.HEARTBEAT_FILE).exists()


def test_a_sweep_whose_cell_another_process_holds_leaves_the_summary_to_that_process(tmp_path):
    """Before, it summarised what it had (the held cell still training) as if its selection were finished."""
    config = _load(write_tiny_sweep(tmp_path / "cfg.py", steps=20, checkpoint=20))
    cells = sweep.expand(config, tmp_path / "sweep")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(cells[0].run_dir), "120"], env=ENV, cwd=REPO,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        lines = []
        assert not sweep.run_sweep(config, tmp_path / "sweep", print_fn=lines.append)
    finally:
        holder.kill()
        holder.wait()
    assert any("are still training in another process, which summarises" in line for line in lines), lines
    assert [sweep.cell_state(c) for c in cells] == [names.PENDING] + [names.DONE] * (len(cells) - 1)
    assert sweep.run_sweep(config, tmp_path / "sweep", print_fn=lines.append)  # the holder gone: it finishes

