"""experiments/gpu_session.sh, the one call a GPU session starts with, runs end to end: every step on tiny models on
the CPU (GPU_SESSION_TINY=1), so a flag a program no longer takes or a record it no longer writes shows here, not in
the device's few minutes. No timing is asserted."""

import json
import os
import re
import subprocess
import sys

from conftest import REPO_ROOT

STEPS = 7  # versions, four benchmarks, the precision check, the kernel tests


def test_the_gpu_session_script_runs_every_step_and_writes_its_records(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "GPU_SESSION_TINY": "1", "OUT": str(out), "PYTHON": sys.executable, "JAX_PLATFORMS": "cpu",
           "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "cache")}
    result = subprocess.run(["bash", str(REPO_ROOT / "experiments" / "gpu_session.sh")], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=540)
    log = (out / "session.log").read_text()
    exits = re.findall(r"^== exit (\d+) at", log, flags=re.M)
    assert "skipped" not in log and exits == ["0"] * STEPS, log[-6000:]
    assert result.returncode == 0, result.stderr[-2000:]

    benchmarks = sorted((out / "benchmarks").glob("*.json"))
    assert len(benchmarks) == 4, benchmarks
    for path in benchmarks:
        record = json.loads(path.read_text())
        assert not record["fast_errors"], (path.name, record["fast_errors"])
        assert record["train"]["model_steps_per_s"] > 0 and record["reference"]["model_steps_per_s"] > 0
        assert record["fast"] and all(f["model_steps_per_s"] > 0 for f in record["fast"])
        assert record["copy"]["bytes_per_s"] > 0  # the card's copy rate, to scale the roofline predictions
        assert record["predictions"] == []  # set against results/roofline; tiny shapes have no prediction
    batches = sorted(json.loads(p.read_text())["config"]["train"]["batch_size"] for p in benchmarks)
    assert batches == [256, 256, 256, 512]

    [precision] = (out / "precision").glob("*.json")
    record = json.loads(precision.read_text())
    assert record["statuses"] == {"fast": ["done"], "float32": ["done"]} and record["seeds"] == [0, 1, 2, 3]
    assert isinstance(record["within_seed_spread"], bool) and record["rows"]
    assert "tests collected" in log  # the kernel tests the GPU runs: collected here, run there

    brought_back = [p for p in out.rglob("*") if p.is_file() and "tiny_precision_runs" not in p.parts]
    assert len(brought_back) <= 8  # what one device call brings back
