"""Long training (Raventós et al. Fig. 4; SPEC experiment 2): the small model at batch 512 trained 4× longer (2M
steps), evaluated densely enough to place the time t* of closest approach to ridge, and the threshold after 2M steps
against the one after 500k.

    python experiments/sweep.py --config=experiments/configs/long_dynamics.py:paper --workdir=runs/long_dynamics
    python experiments/figures/dynamics.py --workdir=runs/long_dynamics   # Δ against step per M, t*, t* ∝ M^α

Variant `:paper`: paper_small.py's setting (4 layers, d = 64, D = 8, K = 16, σ² = 0.25, Adam 1e-3, triangle) at
batch 512 for 2,000,000 steps, its 14 values of M and ∞, seed 0, evaluated every 2,500 steps on 2^14 sequences per
distribution (800 evaluations: t* to 2,500 steps, under 1% of the training cost). Its 500k-step partner is
budgets.py:paper's (512, 500k) grid; `experiments/analyze.py --experiment=budgets` on a folder holding both reads the
single-budget M* at each length and their shift. Cost: 15 models × 2M = 30M model-steps, 630 PFLOP
(`--dry_run`); at the H100 rate predicted for the small model in float32 (DEVICE.md: ~2,240 model-steps/s at batch
256, taken as ~1,120 at 512) about 7.4 GPU-hours (~4 in bfloat16 at ~4,200 / 2,100).

Variant `:cpu` (what the CPU check uses): the CPU reference setting's setting (D = 2, K = 8, 2 layers × 32, Adam 3e-3, batch
64) at N = 2,500 (M = 2 … 16 and ∞) and 4N = 10,000 steps (M = 4 … 12 and ∞), seeds 0, 1, 2, evaluation every 250
steps. These are exactly two of the three grids of budgets.py:cpu, whose committed results (results/cpu_budgets) hold
them: the comparison is its `steps_ladder` and the figure `figures/long_dynamics.png` there. This variant trains the
same cells alone (36 cells, 202,500 model-steps) into its own folder.
"""

from pathlib import Path

from icl_regression.config import base_config, config_file, config_variant


def cpu_config():
    budgets = config_file(Path(__file__).with_name("budgets.py"))
    config = budgets.cpu_config()
    config.sweep.grids = (budgets._grid(budgets.CPU_NUM_TASKS, budgets.CPU_SEEDS, (64,), 2_500, 1_000),
                          budgets._grid(budgets.CPU_LONG_NUM_TASKS, budgets.CPU_SEEDS, (64,), 10_000, 2_500))
    return config


def paper_config():
    config = config_file(Path(__file__).with_name("paper_small.py")).get_config()
    config.train.steps = 2_000_000  # 4× the paper's 500k
    config.train.batch_size = 512
    config.eval.interval = 2_500  # t* resolution
    config.checkpoint.interval = 50_000
    config.sweep.grid.train = base_config().__class__(dict(batch_size=(512,), seed=(0,)))
    return config


def get_config(variant: str = "paper"):
    return config_variant(variant, {"paper": paper_config, "cpu": cpu_config})
