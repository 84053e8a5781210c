"""Regularisation and capacity (Raventós et al. Figs. 7 and 13; SPEC experiment 5): the threshold M* against weight
decay (three orders of magnitude), against width and against depth, and the T_true loss of the M = ∞ model at each
setting (what regularisation costs where diversity is unlimited).

    python experiments/sweep.py --config=experiments/configs/capacity.py:cpu --workdir=runs/cpu_capacity
    python experiments/analyze.py --experiment=capacity --workdir=runs/cpu_capacity   # table, json, 3 figures

Weight decay is AdamW's decoupled decay on the attention and MLP matrices only (training.weight_decay_mask). In
optax it is scaled by the learning rate, so without gradients a weight shrinks by exp(−wd · Σ lr) over training;
the values are chosen so that this factor runs from negligible to strong: Σ lr is 3.75 on the CPU (2,500 steps,
triangle to 3e-3), so wd = 0.01, 0.1, 1 shrink by ×0.96, ×0.69, ×0.02; at paper scale Σ lr = 250 (500k steps to
1e-3), so wd = 1e-3, 1e-2, 1e-1 shrink by ×0.78, ×0.08, ×1e-11.

The sweep is a union of grids, one per series: weight decay for the small and the larger model, width at the small
model's depth, depth at its width (the larger model is the small one made deeper, so it is a point of the depth
series too). The analysis groups runs by (weight decay, width, depth) and draws one figure per axis, one line per
setting of the other two.

Variants `:cpu_weight_decay`, `:cpu_capacity` and `:cpu` (results/cpu_capacity): the CPU reference setting's data and
training (D = 2, K = 8, σ² = 0.25, Adam 3e-3, triangle, 2,500 steps) at batch 128 (at batch 64 the midpoint is not
located: see dimension.py), M = 4 … 12 and ∞, seeds 0, 1, 2; one budget, so M* is the single-budget midpoint. They
are cumulative stages trained into one folder, each a superset of the one before, so whichever stage finished is a
complete sweep: `:cpu_weight_decay` is weight decay 0, 0.01, 0.1, 1 on the small model (2 layers × 32);
`:cpu_capacity` adds width 16 and 64 (2 layers) and depth 1 and 4 (width 32); `:cpu` adds weight decay 0.01, 0.1, 1
on the larger model (4 layers × 32). The small model at weight decay 0 is exactly results/cpu_budgets' cells (batch
128, 2,500 steps) and was copied from there. Cost per setting: 15 cells, 37,500 model-steps; the stages add 3, 4 and
3 settings. Stage 1 measured on the shared 2-core machine (load average ~15–20): 62 min for its 45 new cells.
Stage 2 (`:cpu_capacity`, width 16 and 64, depth 1 and 4; 60 new cells) measured on the 2-core machine: 38 min
48 s wall, its first group sharing the cores with a test run; stage 3 (`:cpu`, weight decay 0.01, 0.1, 1 on the
4-layer model; 45 new cells) 33 min 33 s (results/cpu_capacity/run_log.txt): 165 cells in all.
What the three stages show (3 seeds; results/cpu_capacity; r = Δ_PT,Ridge/(Δ_PT,Ridge + Δ_PT,dMMSE) on T_true, the
curve the midpoint reads: 1 is dMMSE, 0 ridge): at this budget no setting places M* inside M = 4 … 12 (every
midpoint lies above the grid, 95% intervals from log2 M = 2.1–2.4 upwards), so the axes are compared by their
curves:
- weight decay 0, 0.01, 0.1, 1 give the same curve within 0.03 at every M (0.85–0.87 at M = 4, 0.57–0.58 at 6,
  0.52–0.55 at 8, 0.50–0.52 at 12), and the M = ∞ model's L/D on T_true is 0.504 ± 0.016, 0.498 ± 0.005,
  0.500 ± 0.006, 0.508 ± 0.008 (ridge 0.453): no measurable cost of regularisation;
- width 16, 32, 64 (2 layers): the same curve within the seed ranges (r at M = 8: 0.53, 0.54, 0.55; at 12: 0.50,
  0.52, 0.54); M = ∞ L/D 0.513 ± 0.020, 0.504 ± 0.016, 0.495 ± 0.005;
- depth 1, 2, 4 (width 32): the 4-layer model stays nearer dMMSE (r at M = 6, 8, 12: 0.70, 0.63, 0.60 against
  0.57, 0.54, 0.52 for 2 layers) while its M = ∞ model is the closest to ridge (L/D 0.469 ± 0.003): more capacity,
  more memorisation of a small pool at this budget; one layer does not learn ridge at all (M = ∞ L/D 0.828 ± 0.001)
  and its curve is flatter (0.75 at M = 4, 0.57–0.60 at 6 … 12);
- weight decay on the 4-layer model: as on the 2-layer one, no effect beyond the seed spread (r within 0.03 at
  M = 4 … 8 and 0.58–0.61 at 12 for weight decay 0, 0.01, 0.1, 1; M = ∞ L/D 0.469–0.474).

Variant `:paper`: the paper's small (4 × 64) and base (8 × 128) models, D = 8, K = 16, σ² = 0.25, Adam 1e-3,
triangle, batch 256, 500k steps, M as in paper_small.py (14 values) and ∞, seed 0 (PAPER_SEEDS = (0, 1, 2) for
intervals over seeds: 3× the cost); weight decay 0, 1e-3, 1e-2, 1e-1 for both; width 32, 64, 128 (small's depth) and
64, 128, 256 (base's); depth 2, 4, 8 (small's width) and 4, 8, 12 (base's): 14 settings × 15 = 210 models, 105M
model-steps, 6,528 PFLOP (`--dry_run`). GPU time, at DEVICE.md's predicted H100 float32 rates (small model: ~2,240
model-steps/s at batch 256; other sizes: the base model's ~48 TFLOP/s effective, scaled by FLOPs per step): about
40 GPU-hours, most of them the base model at d = 128 and 256 (bfloat16 roughly halves it).
"""

import functools
from pathlib import Path

from icl_regression.config import base_config, config_file, config_variant

CPU_NUM_TASKS = (4, 6, 8, 12, "inf")
CPU_SEEDS = (0, 1, 2)
CPU_WEIGHT_DECAYS = (0.0, 0.01, 0.1, 1.0)
PAPER_WEIGHT_DECAYS = (0.0, 1e-3, 1e-2, 1e-1)
PAPER_SEEDS = (0,)


def _grid(num_tasks, seeds, layers, widths, heads, weight_decays):
    return {"data": {"num_tasks": tuple(num_tasks)},
            "model": {"num_layers": tuple(layers), "d_model": tuple(widths), "num_heads": (heads,)},
            "train": {"weight_decay": tuple(weight_decays), "seed": tuple(seeds)}}


def _series(num_tasks, seeds, small, larger, widths, depths, heads, weight_decays):
    """Weight decay for the small model, width at its depth, depth at its width, weight decay for the larger model."""
    (small_layers, small_width), (larger_layers, larger_width) = small, larger
    return (
        _grid(num_tasks, seeds, (small_layers,), (small_width,), heads, weight_decays),
        _grid(num_tasks, seeds, (small_layers,), widths, heads, (0.0,)),
        _grid(num_tasks, seeds, depths, (small_width,), heads, (0.0,)),
        _grid(num_tasks, seeds, (larger_layers,), (larger_width,), heads, weight_decays),
    )


CPU_STAGES = {"cpu_weight_decay": 1, "cpu_capacity": 3, "cpu": 4}  # variant → how many of the series it trains


def cpu_config(stage: str = "cpu"):
    # D = 2, K = 8, lr 3e-3, 2,500 steps, eval every 250
    config = config_file(Path(__file__).with_name("cpu_reference.py")).get_config()
    config.train.batch_size = 128
    config.sweep.grid = base_config().__class__()
    series = _series(CPU_NUM_TASKS, CPU_SEEDS, small=(2, 32), larger=(4, 32), widths=(16, 32, 64),
                     depths=(1, 2, 4), heads=2, weight_decays=CPU_WEIGHT_DECAYS)
    config.sweep.grids = series[:CPU_STAGES[stage]]
    return config


def paper_config():
    # D = 8, K = 16, lr 1e-3, 500k steps, 14 values of M
    config = config_file(Path(__file__).with_name("paper_small.py")).get_config()
    num_tasks = tuple(config.sweep.grid.data.num_tasks)
    config.train.batch_size = 256
    config.sweep.grid = base_config().__class__()
    small = _series(num_tasks, PAPER_SEEDS, small=(4, 64), larger=(8, 128), widths=(32, 64, 128),
                    depths=(2, 4, 8), heads=2, weight_decays=PAPER_WEIGHT_DECAYS)
    base = (_grid(num_tasks, PAPER_SEEDS, (8,), (64, 128, 256), 2, (0.0,)),
            _grid(num_tasks, PAPER_SEEDS, (4, 8, 12), (128,), 2, (0.0,)))
    config.sweep.grids = small + base
    return config


def get_config(variant: str = "cpu"):
    return config_variant(variant, {"cpu": cpu_config, **{stage: functools.partial(cpu_config, stage)
                                                           for stage in CPU_STAGES}, "paper": paper_config})
