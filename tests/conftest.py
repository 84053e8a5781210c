"""Shared test setup: CPU JAX with a persistent compilation cache, and a tiny run configuration."""

import os
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

from icl_regression import config, names  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent

jax.config.update("jax_compilation_cache_dir", str(REPO_ROOT / ".jax_cache"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

TINY_CONFIG = {
    "data": {"dim": 4, "context_len": 8, "noise_std": 0.5, "num_tasks": 0},
    "model": {"num_layers": 2, "d_model": 32, "num_heads": 2},
    "train": {"steps": 400, "batch_size": 64, "steps_per_call": 50, "learning_rate": 1e-3, "seed": 0},
    "eval": {"interval": 100, "num_sequences": 256, "batch_size": 256, "num_bootstrap": 20},
    "checkpoint": {"interval": 100},
}


@pytest.fixture
def tiny_config() -> config.RunConfig:
    """A run small enough to train in seconds on two CPU cores (D=4, K=8, 2 layers of width 32)."""
    return config.run_config_from_dict(TINY_CONFIG)


# Real sweeps committed with their configs: the README's main job, the CPU reference setting, the CPU dynamics
# experiment (two grids) and the reference setting on Laplace tasks.
COMMITTED_SWEEPS = {name: REPO_ROOT / "results" / name
                    for name in ("cpu_demo", "cpu_reference", "cpu_dynamics", "cpu_dynamics_fine", "cpu_laplace")}

# A sweep small enough to train in seconds: 6 cells (M = 2, 8, ∞ at batch 16 and 32), 60 steps, 4 evaluations.
TINY_SWEEP = {
    "data": {"dim": 2, "context_len": 4, "noise_std": 0.5, "num_tasks": 0},
    "model": {"num_layers": 1, "d_model": 16, "num_heads": 2},
    "train": {"steps": 60, "batch_size": 16, "steps_per_call": 20, "learning_rate": 1e-3, "seed": 0},
    "eval": {"interval": 20, "num_sequences": 64, "batch_size": 64, "num_bootstrap": 10},
    "checkpoint": {"interval": 60},
    "sweep": {"grid": {"data": {"num_tasks": (2, 8, "inf")}, "train": {"batch_size": (16, 32)}}},
}


def build_tiny_sweep(tmp_path_factory) -> Path:
    """Trains the tiny sweep once per test session (a second call finds every cell done and only summarises)."""
    from icl_regression import results, sweep  # jax: imported only when a test needs the sweep trained

    workdir = tmp_path_factory.getbasetemp() / "tiny_sweep"
    if sweep.run_sweep(TINY_SWEEP, workdir, print_fn=lambda *args: None):
        results.summarize(workdir, sweep.run_dirs(TINY_SWEEP, workdir))
    return workdir


@pytest.fixture(scope="session")
def tiny_sweep_dir(tmp_path_factory) -> Path:
    return build_tiny_sweep(tmp_path_factory)


@pytest.fixture(params=["tiny", *COMMITTED_SWEEPS])
def sweep_dir(request) -> Path:
    """Each test runs on the tiny sweep, and on every committed sweep under results/."""
    if request.param in COMMITTED_SWEEPS:
        path = COMMITTED_SWEEPS[request.param]
        if not (path / names.SWEEP_SUMMARY_FILE).exists():
            pytest.skip(f"no committed sweep at {path} (no {names.SWEEP_SUMMARY_FILE}); "
                        "the tiny sweep covers the same code")
        return path
    return request.getfixturevalue("tiny_sweep_dir")
