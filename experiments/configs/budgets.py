"""Data budgets (Raventós et al. Fig. 3 and App. D; SPEC experiments 1 and 2): the threshold read from batch B vs 2B
and from more steps at a fixed batch, side by side, and the single-budget threshold after N and 4N steps.

    python experiments/sweep.py --config=experiments/configs/budgets.py:cpu --workdir=runs/cpu_budgets
    python experiments/analyze.py --experiment=budgets --workdir=runs/cpu_budgets          # crossings, N vs 4N
    python experiments/analyze.py --experiment=above_threshold --workdir=runs/cpu_budgets  # Fig. 10

The crossing needs two budgets that differ in one thing: the sweep summary and `experiments/analyze.py
--experiment=budgets` pair every two budgets equal in one of batch and steps and consecutive in the other
(`icl_regression.threshold.budget_pairs`), so (B, 2N) and (2B, N), the same number of sequences seen as longer runs
or as larger batches, are never paired; M* is the B vs 2B crossing when it lies inside the grid.

Variant `:cpu` (the committed results/cpu_budgets): the CPU reference setting (cpu_reference.py: (D = 2, K = 8, σ² = 0.25, 2 layers of
width 32, Adam 3e-3, triangle schedule, evaluation every 250 steps on 2,048 sequences), seeds 0, 1, 2, at three
budgets: (B, N) = (64, 2,500) and (128, 2,500) with M = 2 … 16 and ∞, and (64, 10,000) with M = 4 … 12 and ∞. The
steps pair is therefore N vs 4N (one long run per M was what the shared 2-core machine allowed; the crossing needs
only more data of one kind, and 4N is also the long-dynamics check of Fig. 4); the paper variant has N vs 2N. The
first grid is exactly the reference setting's cells (results/cpu_reference) and the last the dynamics experiment's
(results/cpu_dynamics), so their seed-0 runs were copied in from there rather than retrained (same run names; made on
an earlier machine, so they cannot be regenerated bit for bit here: see landscape.py). The dynamics runs were copied
from that experiment's first run; results/cpu_dynamics now holds its rerun with per-evaluation replicates, whose
seed-0 runs agree with these copies to about 1e-6 relative (float32 on another machine), not bit for bit, and these
copies carry no per-evaluation replicates (their t* intervals are over seeds only). Cost: 57 cells, 255,000
model-steps; measured wall times (09:21–10:24 and 10:24–11:16 UTC on the shared machine) and results:
results/cpu_budgets/run_log.txt and the README's "What the CPU runs show" list.

Variant `:paper`: the paper's small-model sweep (experiments/configs/paper_small.py: 4 layers, d = 64, D = 8, K = 16,
σ² = 0.25, lr 1e-3, triangle, its 14 values of M and ∞) at (256, 500k), (512, 500k) and (256, 1M), 3 seeds: 135
models, 90M model-steps, 1,181 PFLOP (`--dry_run`). GPU time at the H100 rate predicted for the small model in
float32 (DEVICE.md: ~2,240 model-steps/s at batch 256, taken as ~1,120 at 512): 167 + 335 + 335 min ≈ 14 GPU-hours
(about 7.5 h in bfloat16 at ~4,200 model-steps/s). `--dry_run` prints the plan and its model-steps.
"""

from pathlib import Path

from icl_regression.config import base_config, config_file, config_variant

CPU_NUM_TASKS = (2, 4, 6, 8, 12, 16, "inf")
CPU_LONG_NUM_TASKS = (4, 6, 8, 12, "inf")  # around the threshold: the 4N runs cost 4× each
CPU_SEEDS = (0, 1, 2)


def _grid(num_tasks, seeds, batch_sizes, steps, checkpoint_interval):
    """One product grid (a plain dict: ml_collections leaves dicts inside a tuple as they are)."""
    return {"data": {"num_tasks": tuple(num_tasks)},
            "train": {"batch_size": tuple(batch_sizes), "steps": (steps,), "seed": tuple(seeds)},
            "checkpoint": {"interval": (checkpoint_interval,)}}


def cpu_config():
    # D = 2, K = 8, 2 layers × 32, lr 3e-3, eval every 250 steps
    config = config_file(Path(__file__).with_name("cpu_reference.py")).get_config()
    config.sweep.grid = base_config().__class__()  # the budgets are in `grids` below
    config.sweep.grids = (
        _grid(CPU_NUM_TASKS, CPU_SEEDS, (64, 128), 2_500, 1_000),  # B vs 2B at N (the reference setting's cells)
        _grid(CPU_LONG_NUM_TASKS, CPU_SEEDS, (64,), 10_000, 2_500),  # 4N at B (the dynamics experiment's cells)
    )
    return config


def paper_config():
    # small model, D = 8, K = 16, lr 1e-3, 500k steps
    config = config_file(Path(__file__).with_name("paper_small.py")).get_config()
    num_tasks = tuple(config.sweep.grid.data.num_tasks)
    config.sweep.grid = base_config().__class__()
    config.sweep.grids = (
        _grid(num_tasks, (0, 1, 2), (256, 512), 500_000, 25_000),
        _grid(num_tasks, (0, 1, 2), (256,), 1_000_000, 25_000),
    )
    return config


def get_config(variant: str = "cpu"):
    return config_variant(variant, {"cpu": cpu_config, "paper": paper_config})
