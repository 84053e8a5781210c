"""Every command the README shows is exercised: run here in a cheap mode, or covered by another test or by CI.

Training commands run with --dry_run (their flags, config file and overrides are parsed and checked exactly as
given, the plan and time estimate printed); figure commands draw into a temporary folder; templates (DIR, <sweep>)
only need their script to exist. The lease script's verbs are run for real in tests/test_cli.py, the test command by
.ci/run.
"""

import re
import shlex

import pytest
from clitools import REPO, run

README = (REPO / "README.md").read_text()
TEMPLATE_MARKS = ("<", "DIR", "OUT", "[:", "…")
ANALYSES_OF_TRAINED_MODELS = ("experiments/interpolation.py", "experiments/smoothing.py",
                              "experiments/laplace_comparison.py")


def readme_commands() -> list[str]:
    fenced = [line.strip() for block in re.findall(r"```bash\n(.*?)```", README, re.S) for line in block.splitlines()]
    inline = re.findall(r"`(python experiments/[^`]*)`", README)
    commands = []
    for line in fenced + inline:
        line = line.split("#")[0].strip()
        if line.startswith("pip install") and "&&" in line:
            line = line.split("&&", 1)[1].strip()
        if line and line not in commands:
            commands.append(line)
    return commands


def test_the_readme_shows_the_commands_this_test_knows():
    scripts = {shlex.split(c)[1] for c in readme_commands() if c.startswith("python experiments/")}
    assert {"experiments/train.py", "experiments/sweep.py", "experiments/figures/all.py",
            "experiments/pack.py"} <= scripts, scripts


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command(command, tmp_path):
    words = shlex.split(command)
    if words[:3] == ["python", "-m", "pytest"]:
        assert command in (REPO / ".ci" / "run").read_text()  # CI runs it
        return
    if words[0] == "bash":
        assert words[1] == "experiments/gpu/lease.sh" and words[2] in ("start", "wait", "finish", "all")
        assert (REPO / words[1]).exists() and (words[2] not in ("start", "all") or (REPO / words[4]).exists())
        return  # run for real by tests/test_cli.py (the lease tests)
    assert words[0] == "python" and (REPO / words[1]).exists(), command
    if any(mark in command for mark in TEMPLATE_MARKS) or words[1] == "experiments/benchmark.py":
        return  # a template, or a benchmark (tests/test_benchmark.py runs it shrunk)
    if words[1] in ANALYSES_OF_TRAINED_MODELS:
        # These recompute a committed analysis from the trained models: minutes of retraining where the checkpoints
        # are absent, bit-identical only on the machine that trained them, and they would rewrite committed files.
        # tests/test_estimator_analyses.py runs their analyses on tiny sweeps and redraws the committed ones.
        return
    args = [w if not w.startswith("--workdir=") or "results/" in w else f"--workdir={tmp_path / 'w'}"
            for w in words[1:]]
    if words[1] in ("experiments/train.py", "experiments/sweep.py"):
        args.append("--dry_run")
    if words[1].startswith("experiments/figures/"):
        args.append(f"--out={tmp_path / 'figures'}")
    result = run(args, timeout=180)
    assert result.returncode == 0, f"{command}\n{result.stderr[-2000:]}"
    if "--dry_run" in args:
        assert "estimated" in result.stdout, result.stdout
