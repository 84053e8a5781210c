"""The command-line entry points as a user meets them: one-line errors, no ml_collections needed, determinism,
the compilation cache, and the GPU lease script (run here against a tiny sweep with a fake $OUT)."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import jax
import pytest
from clitools import ENV, REPO, run, script, write_tiny_sweep
from conftest import TINY_SWEEP

from icl_regression import cli, names, transport
from icl_regression.store import RunStore

CPU_DEMO = "experiments/configs/cpu_demo.py"


def _error_cases(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    broken = tmp_path / "broken.py"
    broken.write_text("from icl_regression.config import base_config\n\n\ndef get_config():\n    return base_confg()\n")
    bad_syntax = tmp_path / "bad_syntax.py"
    bad_syntax.write_text("def get_config(:\n    pass\n")
    unwritable = tmp_path / "unwritable"
    unwritable.mkdir(mode=0o500)
    if os.access(unwritable, os.W_OK):  # root writes anywhere it may: use a folder nobody can create files in
        unwritable = Path("/sys/icl_regression_workdir")
    typo = write_tiny_sweep(tmp_path / "typo.py")  # a mistyped section in the file itself
    typo.write_text(typo.read_text().replace("    return config", "    config.trian = {'steps': 5}\n    return config"))
    work = f"--workdir={tmp_path / 'w'}"
    return {  # args → a regular expression the one line must match
        "unknown field": ([f"--config={CPU_DEMO}", work, "--config.train.stepz=1"],
                          r"unknown config field train\.stepz; did you mean train\.steps\?"),
        "unknown section": ([f"--config={CPU_DEMO}", work, "--config.trian.steps=1"],
                            r"unknown config field trian; did you mean train\?"),
        "non-numeric": ([f"--config={CPU_DEMO}", work, "--config.train.learning_rate=fast"],
                        r"--config\.train\.learning_rate='fast' is not a number"),
        "non-integer": ([f"--config={CPU_DEMO}", work, "--config.train.steps=1e3x"],
                        r"--config\.train\.steps='1e3x' is not an integer"),
        "section set to a value": ([f"--config={CPU_DEMO}", work, "--config.data=3"],
                                   r"--config\.data=3: data is a section; set one of its fields, e\.g\. "
                                   r"--config\.data\.\w+=\.\.\."),
        "grid set to a value": ([f"--config={CPU_DEMO}", work, "--config.sweep.grid=3"],
                                r"--config\.sweep\.grid=3: sweep\.grid is a section; set one of its fields"),
        "typo in the config file": ([f"--config={typo}", work],
                                    r"unknown config section trian; did you mean train\? \(the config has "),
        "bad value": ([f"--config={CPU_DEMO}", work, "--config.data.num_tasks=-4"],
                      r"data\.num_tasks=-4 is negative"),
        "workdir is a file": ([f"--config={CPU_DEMO}", f"--workdir={a_file}"], r"is the regular file .*a_file"),
        "workdir under a file": ([f"--config={CPU_DEMO}", f"--workdir={a_file}/sub"], r"lies under the regular file"),
        "unwritable workdir": ([f"--config={CPU_DEMO}", f"--workdir={unwritable}/w"], r"is not writable"),
        "missing config": (["--config=experiments/configs/nope.py", work], r"no such file: .*nope\.py"),
        "config does not import": ([f"--config={bad_syntax}", work], rf"{bad_syntax}:1: SyntaxError"),
        "config fails": ([f"--config={broken}", work], rf"{broken}:5: NameError: name 'base_confg'"),
        "bad flag value": ([f"--config={CPU_DEMO}", work, "--stop_after=soon"], r"--stop_after='soon' is not a"),
        "unknown flag": ([f"--config={CPU_DEMO}", work, "--stepz=3"], r"Unknown command line flag 'stepz'"),
    }


@pytest.mark.parametrize("entry", ["train.py", "sweep.py"])
def test_bad_input_is_one_line_on_stderr_with_exit_code_2(tmp_path, entry):
    for case, (args, pattern) in _error_cases(tmp_path).items():
        result = run([script(entry), *args], timeout=60)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2, (case, result.stderr)
        assert len(lines) == 1 and lines[0].startswith(f"{entry}: error: "), (case, result.stderr)
        assert re.search(pattern, lines[0]), (case, lines[0])
        assert "Traceback" not in result.stdout + result.stderr, case


def test_pack_bad_input_is_one_line(tmp_path):
    result = run([script("pack.py"), f"--workdir={tmp_path / 'missing'}", f"--out={tmp_path}"], timeout=60)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "--workdir=" in result.stderr and "does not exist" in result.stderr


def _bad_flags(tmp_path):
    """Flags that each entry point must refuse before any work: case → (script, args, what the one line says)."""
    a_file = tmp_path / "a_file"  # written by the test
    missing = f"--workdir={tmp_path / 'no_sweep'}"
    landscape = "--config=experiments/configs/landscape.py:cpu"
    return {
        # A file where an output folder is expected: refused up front, or named by the store.
        "figure out is a file": ("figures/smoothing.py", [f"--workdir={REPO / 'results' / 'cpu_reference'}",
                                                          f"--out={a_file}"],
                                 rf"cannot write {a_file}/smoothing\.png: {a_file} is a regular file"),
        "json out under a file": ("laplace_accuracy.py", [f"--out={a_file}/x.json"],
                                  rf"--out={a_file}/x\.json lies under the regular file {a_file}"),
        "json out is a folder": ("laplace_accuracy.py", [f"--out={tmp_path}"], r"is a folder; allowed: the path of"),
        "benchmark out is a file": ("benchmark.py", [f"--out={a_file}"], rf"--out={a_file} is the regular file"),
        "precision workdir is a file": ("precision.py", [f"--workdir={a_file}", f"--out={tmp_path / 'o'}"],
                                        rf"--workdir={a_file} is the regular file"),
        "precision out is a file": ("precision.py", [f"--workdir={tmp_path / 'w'}", f"--out={a_file}"],
                                    rf"--out={a_file} is the regular file"),
        # A file as the scratch folder for retrained runs.
        "landscape scratch": ("landscape.py", [landscape, missing, f"--scratch={a_file}"], r"--scratch=.* is the "),
        "interpolation scratch": ("interpolation.py", [missing, f"--scratch={a_file}/sub"], r"--scratch=.* lies under"),
        "laplace scratch": ("laplace_comparison.py", [missing, f"--scratch={a_file}"], r"--scratch=.* is the regular"),
        # laplace_accuracy.py: every numeric flag.
        "dim": ("laplace_accuracy.py", ["--dim=0"], r"--dim=0; allowed: an integer >= 1"),
        "context_len": ("laplace_accuracy.py", ["--context_len=1"], r"--context_len=1; allowed: an integer >= 2"),
        "noise_std 0": ("laplace_accuracy.py", ["--noise_std=0"], r"--noise_std=0\.0; allowed: a finite float > 0"),
        "noise_std inf": ("laplace_accuracy.py", ["--noise_std=inf"], r"--noise_std=inf; allowed: a finite float"),
        "num_sequences": ("laplace_accuracy.py", ["--num_sequences=0"], r"--num_sequences=0; allowed"),
        "reference_samples": ("laplace_accuracy.py", ["--reference_samples=-1"], r"--reference_samples=-1; allowed"),
        "num_samples": ("laplace_accuracy.py", ["--num_samples=2000,0"], r"--num_samples=2000,0: '0' is not an "
                                                                          r"integer >= 1"),
        "burn_in": ("laplace_accuracy.py", ["--burn_in=-1"], r"--burn_in=-1; allowed: an integer >= 0"),
        "seed": ("laplace_accuracy.py", ["--seed=-1"], r"--seed=-1; allowed: an integer in \[0, 2\^31\)"),
        # sweep.py: the multi-host flags and --shard with --cells.
        "multihost outside a cluster": ("sweep.py", [f"--config={CPU_DEMO}", missing, "--dry_run", "--multihost"],
                                        r"--multihost: jax\.distributed\.initialize\(\) failed \(.+\); outside a "
                                        r"cluster .* pass --coordinator_address"),
        "num_processes 0": ("sweep.py", [f"--config={CPU_DEMO}", missing, "--multihost", "--num_processes=0"],
                            r"--num_processes=0; allowed: an integer >= 1"),
        "process flags alone": ("sweep.py", [f"--config={CPU_DEMO}", missing, "--dry_run", "--num_processes=2"],
                                r"--num_processes without --multihost would be ignored"),
        "shard with cells": ("sweep.py", [f"--config={CPU_DEMO}", missing, "--shard=0/2", "--cells=x"],
                             r"--shard=0/2 with --cells: .* the shard would be ignored"),
        "laplace num_samples": ("laplace_comparison.py", [missing, "--num_samples=0"],
                                r"--num_samples=0; allowed: an integer >= 1"),
        "laplace burn_in": ("laplace_comparison.py", [missing, "--burn_in=-1"], r"--burn_in=-1; allowed: an integer"),
        "max_parts": ("pack.py", [missing, f"--out={tmp_path}", "--checkpoints", "--max_parts=0"],
                      r"--max_parts=0; allowed: an integer >= 1"),
        "num_replicates": ("analyze.py", ["--experiment=budgets", missing, "--num_replicates=1"],
                           r"--num_replicates=1; allowed: an integer >= 2"),
        # List flags of integers name the flag and the item.
        "interpolation batch": ("interpolation.py", [missing, "--batch_size=abc"], r"--batch_size=abc: 'abc' is not "
                                                                                   r"an integer >= 1"),
        "smoothing batch": ("smoothing.py", [missing, "--batch_size=16,x"], r"--batch_size=16,x: 'x' is not"),
        "laplace batch": ("laplace_comparison.py", [missing, "--batch_size=abc"], r"--batch_size=abc: 'abc'"),
        "precision seeds": ("precision.py", ["--seeds=a,b"], r"--seeds=a,b: 'a' is not an integer >= 0"),
        "precision num_tasks": ("precision.py", ["--num_tasks=4,4"], r"num_tasks=\(4, 4\): need at least two "
                                                                    r"distinct M"),
        "benchmark empty fast_path": ("benchmark.py", ["--fast_path="], r"--fast_path= is empty; allowed"),
        # Programs that read no config refuse an override (cli.run_without_config).
        "figure override": ("figures/sweep.py", [missing, "--config.train.steps=3"],
                            r"sweep\.py takes no --config\.\* overrides"),
        "pack override": ("pack.py", [missing, "--config.train.steps=3"], r"pack\.py takes no --config"),
    }


@pytest.mark.parametrize("case", sorted(_bad_flags(Path("/nonexistent"))))
def test_bad_flags_are_one_line_with_exit_code_2_before_any_work(tmp_path, case):
    entry, args, pattern = _bad_flags(tmp_path)[case]
    (tmp_path / "a_file").write_text("x")
    result = run([str(REPO / "experiments" / entry), *args], timeout=120)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith(f"{Path(entry).name}: error: "), result.stderr[-2000:]
    assert re.search(pattern, lines[0]), lines[0]
    assert not list(tmp_path.rglob("*.json")) and not (tmp_path / "no_sweep").exists()  # nothing ran


def test_a_config_file_that_builds_no_mapping_is_named(tmp_path):
    five = tmp_path / "five.py"
    five.write_text("def get_config():\n    return 5\n")
    with pytest.raises(cli.UsageError, match=rf"get_config\(\) in {five} returned int; it must return a config "
                                              r"mapping \(ConfigDict or dict\)"):
        cli.load_config(str(five))


# Every other entry point that reads a results folder: (script, extra args). A missing folder must be one line.
READERS = [("figures/sweep.py", []), ("figures/dynamics.py", []), ("figures/per_position.py", []),
           ("figures/all.py", []), ("figures/interpolation.py", []), ("figures/smoothing.py", []),
           ("figures/laplace_comparison.py", []), ("figures/training_experiments.py", []),
           ("analyze.py", ["--experiment=budgets"]), ("smoothing.py", []), ("interpolation.py", ["--noretrain"]),
           ("laplace_comparison.py", ["--noretrain"]),
           ("landscape.py", ["--config=experiments/configs/landscape.py:cpu", "--noretrain"])]


@pytest.mark.parametrize("entry,extra", READERS, ids=[r[0] for r in READERS])
def test_a_missing_results_folder_is_one_line_with_exit_code_2(tmp_path, entry, extra):
    missing = tmp_path / "no_such_sweep"
    result = run([str(REPO / "experiments" / entry), f"--workdir={missing}", *extra], timeout=120)
    lines = result.stderr.strip().splitlines()
    name = Path(entry).name
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith(f"{name}: error: "), result.stderr
    assert "no_such_sweep" in lines[0] and "Traceback" not in result.stderr, lines[0]


# A file of a sweep folder cut short (a full disk, a copy interrupted) → (its path in the folder, sweep.py's arguments
# besides --workdir). Each must be one line naming the file, not a JSONDecodeError traceback.
DAMAGED_JSON = {
    "sweep config, training": (names.SWEEP_CONFIG_FILE, ["--config={tiny}"]),
    "sweep config, summarize": (names.SWEEP_CONFIG_FILE, ["--summarize"]),
    "run config, training": ("{run}/" + names.CONFIG_FILE, ["--config={tiny}"]),
    "measured rate, dry run": (names.SWEEP_RATE_FILE, ["--config={tiny}", "--dry_run"]),
}


@pytest.mark.parametrize("case", sorted(DAMAGED_JSON))
def test_a_damaged_json_file_in_the_workdir_is_one_line(tiny_sweep_dir, tmp_path, case):
    import shutil

    workdir = tmp_path / "sweep"
    shutil.copytree(tiny_sweep_dir, workdir)
    tiny = tmp_path / "tiny.py"
    tiny.write_text(f"def get_config():\n    return {TINY_SWEEP!r}\n")
    (run_dir, *_), (rel, args) = sorted((workdir / names.RUNS_DIR).iterdir()), DAMAGED_JSON[case]
    (run_dir / names.SUMMARY_FILE).unlink()  # one cell left to plan (the dry run estimates its time)
    path = workdir / rel.format(run=run_dir.relative_to(workdir))
    path.write_text(path.read_text()[:40])
    result = run([script("sweep.py"), f"--workdir={workdir}", "--figure=false", *(a.format(tiny=tiny) for a in args)])
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-3000:]
    assert re.search(rf"{re.escape(str(path))} is not valid JSON \(.+\); remove or restore it$", lines[0]), lines[0]


def test_grid_overrides_take_a_comma_list(tmp_path):
    result = run([script("sweep.py"), f"--config={CPU_DEMO}", f"--workdir={tmp_path}", "--dry_run",
                  "--config.sweep.grid.data.num_tasks=1,4,16,inf", "--config.sweep.grid.train.seed=0,1"], timeout=120)
    assert result.returncode == 0, result.stderr
    assert "16 cells" in result.stdout  # 4 M × 2 batch sizes × 2 seeds
    assert "Unable to initialize backend" not in result.stdout + result.stderr


def test_entry_points_run_without_ml_collections(tmp_path):
    """The GPU machine has no ml_collections: a stand-in package that fails to import proves nothing needs it."""
    blocker = tmp_path / "blocker" / "ml_collections"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('ml_collections is not installed here')\n")
    env = dict(ENV, PYTHONPATH=f"{blocker.parent}{os.pathsep}{REPO}")
    env.pop("JAX_PLATFORMS")  # as on a user's machine: jax probes its backends (and must not say so)
    check = run(["-c", "import ml_collections"], env=env)
    assert check.returncode != 0 and "not installed here" in check.stderr
    config_file = write_tiny_sweep(tmp_path / "cfg.py", steps=20, checkpoint=20)
    result = run([script("train.py"), f"--config={config_file}", f"--workdir={tmp_path / 'w'}"], env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert ": done, final" in result.stdout
    assert "Unable to initialize backend" not in result.stdout + result.stderr
    dry = run([script("sweep.py"), "--config=experiments/configs/paper_small.py:quick", f"--workdir={tmp_path / 's'}",
               "--dry_run"], env=env, timeout=120)
    assert dry.returncode == 0 and "8 cells" in dry.stdout, dry.stderr[-2000:]


def test_the_same_command_in_two_fresh_folders_gives_identical_metrics(tmp_path):
    """Determinism on one machine and backend. Also: the persistent compilation cache is on by default, in the
    workdir, and a second process can load from it."""
    config_file = write_tiny_sweep(tmp_path / "cfg.py", steps=40, checkpoint=40)
    env = {k: v for k, v in ENV.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    first_cache = tmp_path / "first" / ".jax_cache"
    outputs = []
    for name, cache_flag in (("first", []), ("second", [f"--compilation_cache={first_cache}"])):
        workdir = tmp_path / name
        result = run([script("train.py"), f"--config={config_file}", f"--workdir={workdir}",
                      "--config.data.num_tasks=8", *cache_flag], env=env, timeout=180)
        assert result.returncode == 0, result.stderr[-2000:]
        (run_dir,) = (workdir / names.RUNS_DIR).iterdir()
        outputs.append(((run_dir / names.METRICS_FILE).read_bytes(),
                        {k: v for k, v in RunStore(run_dir).summary().items() if k != "finished_at"}))
    assert any(first_cache.iterdir()), "the compilation cache was not written"
    assert not (tmp_path / "second" / ".jax_cache").exists()
    assert outputs[0] == outputs[1]


def test_compilation_cache_is_private_and_configurable(tmp_path, monkeypatch):
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    before = jax.config.jax_compilation_cache_dir
    try:
        path = cli.configure_compilation_cache("", tmp_path / "work")
        assert path == tmp_path / "work" / ".jax_cache" and path.stat().st_mode & 0o077 == 0
        assert jax.config.jax_compilation_cache_dir == str(path)
        assert cli.configure_compilation_cache("none", tmp_path / "work") is None
        shared = tmp_path / "shared"
        shared.mkdir()
        shared.chmod(0o777)
        with pytest.raises(cli.UsageError, match="writable by other users"):
            cli.configure_compilation_cache(str(shared), tmp_path)
    finally:
        jax.config.update("jax_compilation_cache_dir", before)


def _lease(verb, workdir, *args, env, timeout=120):
    return subprocess.run(["bash", str(REPO / "experiments" / "gpu" / "lease.sh"), verb, str(workdir), *args],
                          env=env, capture_output=True, text=True, timeout=timeout)


def test_lease_script_starts_stops_packs_and_the_next_lease_resumes(tmp_path):
    steps = 4000  # a few seconds per group: long enough to be stopped inside the first one
    out, lease_in = tmp_path / "OUT", tmp_path / "lease_in"
    env = dict(ENV, OUT=str(out), PYTHON=sys.executable, LEASE_START_WAIT="1", LEASE_IN=str(lease_in))
    config_file = write_tiny_sweep(tmp_path / "cfg.py", steps=steps, checkpoint=steps // 2)
    workdir = tmp_path / "first_lease"
    started = _lease("start", workdir, str(config_file), "10m", "--figure=false", env=env)
    assert started.returncode == 0 and "started pid" in started.stdout, started.stdout + started.stderr
    waited = _lease("wait", workdir, "1", env=env)  # imports and setup alone take longer than this
    assert waited.returncode == 0 and "still running" in waited.stdout, waited.stdout
    log = workdir / "lease.log"
    deadline = time.time() + 120
    while "| group step" not in log.read_text() and time.time() < deadline:  # stop it inside the first group
        time.sleep(0.2)
    finished = _lease("finish", workdir, env=env)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "stopped (signal SIGTERM)" in log.read_text()

    files = sorted(out.iterdir())
    assert 2 <= len(files) <= 8 and all(re.fullmatch(r"[A-Za-z0-9._-]+", f.name) for f in files), files
    assert all(f.stat().st_size <= 16 * 2**20 for f in files)
    assert files[-1].name == "first_lease-results.tar.gz"
    index = json.loads((workdir / names.SWEEP_INDEX_FILE).read_text())
    assert index["counts"][names.RUNNING] == 0 and index["counts"][names.DONE] < 4

    # The next lease: the files come back in lease_in/, and `start` unpacks them and resumes the sweep.
    lease_in.mkdir()
    for f in files:
        (lease_in / f.name).write_bytes(f.read_bytes())
    second = tmp_path / "second_lease"
    resumed = _lease("start", second, str(config_file), "10m", "--figure=false", env=env)
    assert resumed.returncode == 0 and "unpacked" in resumed.stdout, resumed.stdout + resumed.stderr
    done = _lease("wait", second, "240", env=env, timeout=300)
    assert "not running" in done.stdout, done.stdout
    index = json.loads((second / names.SWEEP_INDEX_FILE).read_text())
    assert index["counts"][names.DONE] == 4, (second / "lease.log").read_text()[-3000:]
    log = (second / "lease.log").read_text()  # the carried log of the first lease, then this one's
    plan = re.findall(r"([\d,]+) model-steps,", log.split("=== lease start")[-1])[0]
    assert int(plan.replace(",", "")) < 4 * steps  # it resumed from the carried checkpoints
    for cell in index["cells"]:
        assert [r["step"] for r in RunStore(second / cell["run_dir"]).metrics()] == list(range(0, steps + 1, 20))
    assert transport.result_files(second)
    again = _lease("start", second, str(config_file), "10m", "--figure=false", env=env)  # same machine, later
    assert again.returncode == 0 and "file(s) into" not in again.stdout, again.stdout  # not over the newer files
    assert "already unpacked on this machine" in again.stdout
    assert "not running" in _lease("wait", second, "120", env=env, timeout=180).stdout


def test_summarize_uses_the_stored_config_and_refuses_another(tiny_sweep_dir, tmp_path):
    import shutil

    workdir = tmp_path / "sweep"
    shutil.copytree(tiny_sweep_dir, workdir)
    before = (workdir / names.SWEEP_SUMMARY_FILE).read_text()
    other = write_tiny_sweep(tmp_path / "other.py")
    refused = run([script("sweep.py"), "--summarize", f"--workdir={workdir}", f"--config={other}"])
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert "differs from" in refused.stderr and "train.steps" in refused.stderr
    assert (workdir / names.SWEEP_SUMMARY_FILE).read_text() == before  # untouched
    done = run([script("sweep.py"), "--summarize", f"--workdir={workdir}", "--figure=false"])
    assert done.returncode == 0 and "threshold" in done.stdout, done.stderr[-2000:]
    summary = json.loads((workdir / names.SWEEP_SUMMARY_FILE).read_text())
    assert summary["complete"] and len(summary["cells"]) == 6


def test_a_train_py_folder_can_be_summarised_and_drawn(tmp_path):
    config_file = write_tiny_sweep(tmp_path / "cfg.py", steps=20, checkpoint=20)
    workdir = tmp_path / "single"
    assert run([script("train.py"), f"--config={config_file}", f"--workdir={workdir}"]).returncode == 0
    done = run([script("sweep.py"), "--summarize", f"--workdir={workdir}"], timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(json.loads((workdir / names.SWEEP_SUMMARY_FILE).read_text())["cells"]) == 1
    assert (workdir / "figures" / "sweep.png").exists()


def test_help_shows_the_examples_unmangled():
    result = run([script("train.py"), "--help"])
    assert result.returncode == 0
    for flag, text in (("--helpfull", "--config"), ("--helpxml", "<AllFlags>")):  # help is not an error either
        full = run([script("train.py"), flag])
        assert full.returncode == 0 and text in full.stdout, (flag, full.stderr[-2000:])
    assert ("python experiments/train.py --config=experiments/configs/cpu_reference.py --workdir=runs/single "
            "--config.data.num_tasks=8") in result.stdout
    assert not re.search(r"\S {4,}--config", result.stdout)  # no backslash-newline turned into a run of spaces


def test_a_whole_lease_in_one_call_stops_at_its_deadline_and_packs(tmp_path):
    """`lease.sh all`: start, wait for the sweep's own clean stop at STOP_AFTER, pack into $OUT, in one command; the
    Python found on PATH (the GPU machine's venv names it python3) when PYTHON is not set."""
    out = tmp_path / "OUT"
    env = {k: v for k, v in ENV.items() if k != "PYTHON"}
    env.update(OUT=str(out), PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}")
    config_file = write_tiny_sweep(tmp_path / "cfg.py", steps=400_000, checkpoint=200_000)
    workdir = tmp_path / "lease"
    done = _lease("all", workdir, str(config_file), "25s", "--figure=false", env=env, timeout=280)
    assert done.returncode == 0, done.stdout + done.stderr
    log = (workdir / "lease.log").read_text()
    assert "stopped (deadline" in log and "no clean exit" not in done.stdout, log[-2000:]
    files = sorted(p.name for p in out.iterdir())
    assert "lease-results.tar.gz" in files and any("checkpoints" in f for f in files), files
    index = json.loads((workdir / names.SWEEP_INDEX_FILE).read_text())
    assert index["counts"][names.RUNNING] == 0 and index["counts"][names.DONE] == 0


# Stands in for a sweep that overruns its deadline and ignores SIGTERM; every other command runs for real.
STUBBORN_PYTHON = """#!/usr/bin/env bash
if [[ "$1" == experiments/sweep.py ]]; then trap "" TERM; echo "stubborn sweep"; exec sleep 300; fi
exec "{python}" "$@"
"""


def test_a_lease_does_not_start_when_the_carried_files_do_not_unpack(tmp_path):
    """Before, `set -e` did not act on the unpack (left of `&&`): the sweep started without the carried work and its
    packing then replaced the previous lease's files."""
    lease_in = tmp_path / "lease_in"
    lease_in.mkdir()
    (lease_in / "sweep-results.tar.gz").write_bytes(b"not an archive" * 100)
    env = dict(ENV, OUT=str(tmp_path / "OUT"), PYTHON=sys.executable, LEASE_START_WAIT="0", LEASE_IN=str(lease_in),
               LEASE_SEED="none")
    started = _lease("start", tmp_path / "lease", "unused_config.py", "8m", env=env)
    assert started.returncode == 1 and "not started: the carried files" in started.stdout, started.stdout
    assert not (tmp_path / "lease" / ".lease_pid").exists()


def test_a_whole_lease_packs_within_its_call_even_when_the_sweep_does_not_stop(tiny_sweep_dir, tmp_path):
    """Before, `all` waited 570 s and then 120 s for a clean stop before packing: past the call's 600 s, so a
    sweep that overran its deadline brought nothing back. Also: `start` fills an empty workdir from the committed
    results (LEASE_SEED), so that the next lease needs only the checkpoint parts carried."""
    python = tmp_path / "python3"
    python.write_text(STUBBORN_PYTHON.format(python=sys.executable))
    python.chmod(0o755)
    out, workdir = tmp_path / "OUT", tmp_path / "lease"
    env = dict(ENV, OUT=str(out), PYTHON=str(python), LEASE_SEED=str(tiny_sweep_dir), LEASE_CALL_S="20",
               LEASE_PACK_S="5", LEASE_STOP_WAIT="3")
    started = time.monotonic()
    done = _lease("all", workdir, "unused_config.py", "8m", env=env, timeout=120)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"seeded {workdir} from {tiny_sweep_dir}" in done.stdout and "no clean exit: killing" in done.stdout
    assert elapsed < 20 + 10, elapsed  # packing began by 20 - 5 s
    assert (out / "lease-results.tar.gz").exists()
    assert transport.unpack([out], tmp_path / "back")
