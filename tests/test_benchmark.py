"""The benchmark runs end to end on a tiny model and records every figure; no timing is asserted."""

import json
import os
import subprocess
import sys

import jax
import pytest

from icl_regression import benchmarking
from icl_regression.config import EvalConfig, run_config_from_dict
from icl_regression.model import flops_per_sequence

from conftest import REPO_ROOT

# The subprocesses share the tests' persistent compilation cache (or the one the environment names).
CACHE_ENV = {"JAX_COMPILATION_CACHE_DIR": os.environ.get("JAX_COMPILATION_CACHE_DIR", str(REPO_ROOT / ".jax_cache")),
             "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}

TINY_FLAGS = ["--num_layers=1", "--d_model=16", "--num_heads=2", "--batch_size=8", "--ensemble_size=2",
              "--repeats=2", "--steps_per_call=2", "--dmmse_tasks=64", "--dmmse_sequences=16"]


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and value > 0


def test_benchmark_main_writes_a_complete_record(tmp_path):
    env = {**os.environ, **CACHE_ENV, "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, str(REPO_ROOT / "experiments" / "benchmark.py"), *TINY_FLAGS,
                             f"--out={tmp_path}"], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    [path] = tmp_path.glob("cpu_L1_d16_h2_*.json")
    record = json.loads(path.read_text())
    assert "speed-up" in result.stdout and "copy rate" in result.stdout and str(path) in result.stdout

    assert record["device"]["platform"] == "cpu" and record["device"]["kind"]
    assert all(record["versions"][p] for p in ("jax", "flax", "optax"))
    assert record["config"]["model"] == {"num_layers": 1, "d_model": 16, "num_heads": 2, "compute_dtype": "float32",
                                         "attention": "xla", "mlp": "xla", "layer_norm": "xla"}
    assert record["settings"]["fast_paths"] == ["bfloat16"]  # the CPU default
    assert record["fast_errors"] == {}
    [fast] = record["fast"]
    assert record["settings"]["ensemble_size"] == 2 and record["settings"]["steps_per_call"] == 2
    for section, keys in {
        "train": ("steps_per_s", "model_steps_per_s", "step_s", "compile_s", "first_call_s", "params_per_model"),
        "reference": ("steps_per_s", "model_steps_per_s", "step_s", "compile_s"),
        "flops": ("model_flops_per_step", "achieved_flops", "reference_achieved_flops", "peak_flops",
                  "peak_fraction", "reference_peak_fraction"),
        "dmmse": ("dmmse_s", "task_sequences_per_s", "memory_bytes_estimate"),
        "copy": ("copy_s", "bytes_per_s", "num_bytes"),
    }.items():
        for key in keys:
            assert _positive(record[section][key]), (section, key, record[section].get(key))
    assert record["train"]["num_members"] == 2 and record["reference"]["num_members"] == 1
    assert record["reference"]["compute_dtype"] == "float32" and record["reference"]["steps_per_call"] == 1
    for key in ("steps_per_s", "model_steps_per_s", "compile_s", "first_call_s", "speedup", "over_float32"):
        assert _positive(fast[key]), key
    assert _positive(fast["flops"]["achieved_flops"])
    assert record["train"]["path"] == "float32" and fast["path"] == "bfloat16" and fast["num_members"] == 2
    assert record["speedup"] == pytest.approx(record["train"]["model_steps_per_s"]
                                              / record["reference"]["model_steps_per_s"])
    assert fast["speedup"] == pytest.approx(fast["model_steps_per_s"] / record["reference"]["model_steps_per_s"])
    assert "compile (not in rates)" in result.stdout
    cfg = run_config_from_dict(record["config"])
    forward = flops_per_sequence(cfg.model, cfg.data.context_len, cfg.data.dim)
    assert record["flops"]["model_flops_per_step"] == pytest.approx(3 * forward * 8)  # fwd + 2×fwd bwd, batch 8
    assert record["eval"] is None  # --eval not given
    assert record["complete"] and fast["over_float32"] == pytest.approx(
        fast["model_steps_per_s"] / fast["float32_model_steps_per_s"])  # against the float32 timing of its stage
    assert record["copy"]["calls_per_repeat"] == benchmarking.COPY_CALLS
    assert record["copy"]["bytes_per_s"] == pytest.approx(
        2 * record["copy"]["num_bytes"] / record["copy"]["copy_s"])  # read + write, per call


@pytest.mark.parametrize("flags, said", [
    (["--ensemble_size=0"], "--ensemble_size=0; allowed: an integer >= 1"),
    (["--steps_per_call=0"], "--steps_per_call=0; allowed: an integer >= 1"),
    (["--repeats=-1"], "--repeats=-1; allowed: an integer >= 1"),
    (["--dmmse_tasks=4", "--dmmse_sequences=0"], "--dmmse_sequences=0; allowed: an integer >= 1"),
    (["--dmmse_tasks=-1"], "--dmmse_tasks=-1; allowed: an integer >= 0"),
])
def test_benchmark_refuses_bad_sizes_before_timing(tmp_path, flags, said):
    result = subprocess.run([sys.executable, str(REPO_ROOT / "experiments" / "benchmark.py"), *TINY_FLAGS, *flags,
                             f"--out={tmp_path}"], cwd=REPO_ROOT, env={**os.environ, "JAX_PLATFORMS": "cpu"},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr == f"benchmark.py: error: {said}\n", result.stderr[-2000:]
    assert not list(tmp_path.iterdir())


def test_benchmark_hands_over_each_stage_as_it_is_measured(tiny_config):
    """A run cut off by a time limit keeps what it measured: the float32 group and the reference with the copy rate
    first, then the record again after each fast path (a failing one recorded as such), then the complete one."""
    spec = benchmarking.BenchmarkSpec(tiny_config.replace(train={"batch_size": 8}), "tiny", ensemble_size=2,
                                      steps_per_call=2, repeats=1, with_eval=False, dmmse_tasks=0,
                                      dmmse_sequences=16, fast_paths=("bfloat16", "bfloat16+fused_mlp+no_such"))
    stages = []
    record = benchmarking.run_benchmark(spec, lambda r: stages.append(json.loads(json.dumps(r))))
    assert [(s["complete"], len(s["fast"]), sorted(s["fast_errors"])) for s in stages] == [
        (False, 0, []), (False, 1, []), (False, 1, ["bfloat16+fused_mlp+no_such"])]
    assert stages[0]["train"]["model_steps_per_s"] > 0 and stages[0]["copy"]["bytes_per_s"] > 0
    assert record["complete"] and record["fast"][0]["path"] == "bfloat16"


def test_benchmark_groups_of_any_size_have_bounded_pools():
    """Ensembles of 20-44 models (member i once trained on M = 2^(2i+1): int32 overflow at 16 members)."""
    cfgs = benchmarking.group_configs(run_config_from_dict({}), 44)
    num_tasks = [c.data.num_tasks for c in cfgs]
    assert len(num_tasks) == 44 and max(num_tasks) == 2**benchmarking.MAX_BENCHMARK_POOL_LOG2
    assert min(num_tasks) == 2 and len(set(num_tasks)) == 8


def test_time_evaluation_reports_positive_times(tiny_config):
    cfg = tiny_config.replace(model={"num_layers": 1, "d_model": 16, "num_heads": 2})
    states, _, _ = benchmarking.group_inputs(benchmarking.group_configs(cfg, 2))
    eval_cfg = EvalConfig(num_sequences=64, batch_size=64, num_bootstrap=0)
    figures = benchmarking.time_evaluation(cfg, states, 2, repeats=1, eval_cfg=eval_cfg)
    assert _positive(figures["eval_s"]) and _positive(figures["bank_build_s"])
    assert figures["num_sequences"] == 64


# float32 on NVIDIA GPUs since Ampere: XLA's default matmul precision is TF32, so that is the peak (against the
# plain fp32 rate a memory-bound float32 step printed ~100% of peak).
@pytest.mark.parametrize("kind, dtype, peak", [("NVIDIA H100 80GB HBM3", "bfloat16", 989e12),
                                               ("NVIDIA H100 80GB HBM3", "float32", 495e12),
                                               ("NVIDIA H100 PCIe", "bfloat16", 756e12),
                                               ("NVIDIA H200", "bfloat16", 989e12),
                                               ("NVIDIA H200", "float32", 495e12),
                                               ("NVIDIA GH200 480GB", "float32", 495e12),
                                               ("NVIDIA A100-SXM4-80GB", "float32", 156e12),
                                               ("TPU v5 lite", "bfloat16", 197e12),
                                               ("TPU v4", "float32", None)])
def test_device_peak_table(kind, dtype, peak):
    class Device:
        platform, device_kind = "gpu", kind
    assert benchmarking.device_peak(Device(), dtype)["peak_flops"] == peak


def test_full_float32_matmuls_are_measured_against_the_fp32_peak():
    class Device:
        platform, device_kind = "gpu", "NVIDIA H200"
    with jax.default_matmul_precision("highest"):
        figures = benchmarking.device_peak(Device(), "float32")
    assert figures["peak_flops"] == 67e12 and figures["source"].endswith("fp32")


def test_cpu_peak_is_an_estimate():
    figures = benchmarking.device_peak(jax.devices("cpu")[0], "float32")
    assert _positive(figures["peak_flops"]) and figures["source"].startswith("estimate")
