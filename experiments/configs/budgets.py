"""Data budgets (Raventós et al. Fig. 3 and App. D; SPEC experiments 1 and 2): the threshold read from batch B vs 2B
and from steps N vs 2N, side by side, and the single-budget threshold after N, 2N and 4N steps.

    python experiments/sweep.py --config=experiments/configs/budgets.py:cpu --workdir=runs/cpu_budgets
    python experiments/budgets.py --workdir=runs/cpu_budgets          # the analysis: both crossings, N vs 4N
    python experiments/figures/budgets.py --workdir=runs/cpu_budgets  # → figures/budgets.{png,pdf}

The crossing needs two budgets that differ in one thing. The suite's default summary pairs consecutive budgets
sorted by batch × steps, which for this grid gives (64, 2,500)–(64, 5,000), then (64, 5,000)–(128, 2,500) (the same
data seen as larger batches: not a budget pair at all) and (128, 2,500)–(64, 10,000); `experiments/budgets.py` and
`icl_regression.axes.budget_pairs` choose the pairs explicitly instead: every pair of budgets equal in one of batch
and steps and doubled in the other.

Variant `:cpu` (the committed results/cpu_budgets): the CPU main job's setting (D = 2, K = 8, σ² = 0.25, 2 layers of
width 32, Adam 3e-3, triangle schedule, evaluation every 250 steps on 2,048 sequences), M = 2 … 16 and ∞, seeds
0, 1, 2, at four budgets: (B, N) = (64, 2,500), (128, 2,500), (64, 5,000) and (64, 10,000). The first two grids are
exactly the main job's cells (results/cpu_demo) and the last exactly the dynamics experiment's (results/cpu_dynamics),
so their seed-0 runs may be copied in from there and are skipped. Cost: 84 cells, 420,000 model-steps; measured
wall time and what it shows: see the README row (filled in from the committed run_log.txt).

Variant `:paper`: the paper's small-model sweep (experiments/configs/paper_small.py: 4 layers, d = 64, D = 8, K = 16,
σ² = 0.25, lr 1e-3, triangle, 22 values of M and ∞) at (256, 500k), (512, 500k) and (256, 1M), 3 seeds: 198 models,
132M model-steps. GPU time at the H100 rate predicted for the small model in float32 (DEVICE.md: ~2,240 model-steps/s
at batch 256, taken as proportional to 1/batch, so ~1,120 at 512): 500k·22·3/2,240 + 500k·22·3/1,120 +
1M·22·3/2,240 s ≈ 245 + 491 + 491 min ≈ 20.5 GPU-hours (about 10.7 h in bfloat16 at ~4,200 model-steps/s).
`--dry_run` prints the plan and its model-steps.
"""

import importlib.util
from pathlib import Path

from icl_regression.config import base_config

CPU_NUM_TASKS = (2, 4, 6, 8, 12, 16, "inf")
CPU_SEEDS = (0, 1, 2)


def _sibling(name: str):
    """Another config file of this folder (config files are loaded by path, so siblings are too)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _grid(num_tasks, seeds, batch_sizes, steps, checkpoint_interval):
    """One product grid (a plain dict: ml_collections leaves dicts inside a tuple as they are)."""
    return {"data": {"num_tasks": tuple(num_tasks)},
            "train": {"batch_size": tuple(batch_sizes), "steps": (steps,), "seed": tuple(seeds)},
            "checkpoint": {"interval": (checkpoint_interval,)}}


def cpu_config():
    config = _sibling("cpu_demo").get_config()  # D = 2, K = 8, 2 layers × 32, lr 3e-3, eval every 250 steps
    config.sweep.grid = base_config().__class__()  # the budgets are in `grids` below
    config.sweep.grids = (
        _grid(CPU_NUM_TASKS, CPU_SEEDS, (64, 128), 2_500, 1_000),  # B vs 2B at N (the main job's cells)
        _grid(CPU_NUM_TASKS, CPU_SEEDS, (64,), 5_000, 2_500),  # N vs 2N at B
        _grid(CPU_NUM_TASKS, CPU_SEEDS, (64,), 10_000, 2_500),  # 4N (the dynamics experiment's cells)
    )
    return config


def paper_config():
    config = _sibling("paper_small").get_config()  # small model, D = 8, K = 16, lr 1e-3, 500k steps
    num_tasks = tuple(config.sweep.grid.data.num_tasks)
    config.sweep.grid = base_config().__class__()
    config.sweep.grids = (
        _grid(num_tasks, (0, 1, 2), (256, 512), 500_000, 25_000),
        _grid(num_tasks, (0, 1, 2), (256,), 1_000_000, 25_000),
    )
    return config


def get_config(variant: str = "cpu"):
    if variant in ("", "cpu"):
        return cpu_config()
    if variant == "paper":
        return paper_config()
    raise ValueError(f"unknown variant {variant!r}; allowed: 'cpu', 'paper'")
