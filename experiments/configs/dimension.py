"""Dimension scaling (Raventós et al. Fig. 6; SPEC experiment 4): the threshold M* against the task dimension D, κ* =
M*/D, and how far dMMSE is from ridge at the largest M of each D.

    python experiments/sweep.py --config=experiments/configs/dimension.py:cpu --workdir=runs/cpu_dimension
    python experiments/analyze.py --experiment=dimension --workdir=runs/cpu_dimension   # table, json, figure

Every D keeps the signal-to-noise ratio of the reference dimension (E[(wᵀx)²]/σ² = D/σ² fixed: σ² grows with D) and
a context length proportional to D, so that each D sees the same number of examples per dimension; M is gridded as
multiples of D, so the grids line up on the κ = M/D axis.

Variant `:cpu` (the committed results/cpu_dimension): the CPU reference setting's model and training (2 layers of width 32,
Adam 3e-3, triangle, 2,500 steps, evaluation every 250 steps on 2,048 sequences) at batch 128, D ∈ {1, 2, 4} with
K = 4D (the reference setting's K/D: with K = 2D, D = 2 would leave 4 positions, too few for ridge to pull away from dMMSE)
and σ² = 0.125·D (= 0.25 at the reference setting's D = 2), M = D·{1, 2, 3, 4, 6} and ∞ (D = 1 also 8 … 24, since it still
memorises at M = 6; D = 2 also 16), seeds 0, 1, 2: one budget, so M* is the single-budget midpoint. Batch 128 rather than the reference setting's 64: at batch 64 the three seeds' M = ∞ models are
still 0.05–0.23 from ridge after 2,500 steps and the midpoint is not located (results/cpu_budgets). The D = 2 cells
are exactly results/cpu_budgets' (batch 128, 2,500 steps) and were copied from there. The same model and steps for
every D, as in the paper (one model for all D): larger D is a harder problem at a fixed budget, so part of any growth
of M* with D here can be under-training. D = 8 (64 tokens, ~5× the FLOPs of D = 2) did not fit the shared machine's
time; it is the first dimension of the paper variant. Cost: 69 cells, 172,500 model-steps (48 trained here, the 21
D = 2 cells copied). Measured on the shared 2-core machine under a load average of ~15–21: 2 h 2 min for the 36
D = 1 and D = 4 cells, 6 min for D = 1's 12 extra cells (results/cpu_dimension/run_log.txt).
What it shows (3 seeds; results/cpu_dimension; intervals over seeds and evaluation sequences): at this fixed
budget the transition does not scale with D as in the paper. D = 4's midpoint is located: log2 M* = 2.64, 95%
interval [2.39, 3.31] (M* ≈ 6.2, κ* = M*/D = 1.55 [1.31, 2.47]); its models leave dMMSE early (r = Δ_PT,Ridge/(Δ_PT,Ridge +
Δ_PT,dMMSE) = 0.63 at M = D = 4, 0.39 at M = 8; 1 is dMMSE, 0 ridge). D = 2's r falls from 0.96 (M = 2)
to 0.48 (M = 16), midpoint 3.82 [2.23, above the grid]; D = 1's stays above 1/2 up to M = 24 (0.67: its models stay
nearer dMMSE, which at M = 24 is within 0.031 of ridge). In short,
2,500 steps are enough to memorise a one- or two-dimensional pool but not a four-dimensional one, so the CPU reading
of κ* falls with D, where the paper (500k steps, one large model) finds M* roughly proportional to D. Δ_dMMSE,Ridge at
the largest M of each D: 0.031 ± 0.018 (D = 1, M = 24), 0.187 ± 0.018 (D = 2, M = 16), 0.334 ± 0.023 (D = 4,
M = 24).

Variant `:paper`: D ∈ {8, 16, 32}, K = 2D, σ² = 0.25·D/8, the large model (12 layers, d = 256, 4 heads), Adam 1e-3,
triangle, batch 256, 500k steps, M = D·2^j for j = 5 … 13 and the half powers j = 7.5 … 11.5 (14 values) and ∞,
seed 0 (set PAPER_SEEDS = (0, 1, 2) for intervals over seeds: 3× the cost). 45 models, 22.5M model-steps,
25,900 PFLOP of training (the large model at 4D tokens: 0.47 TFLOP per model-step at D = 8, 2.0 at D = 32). GPU
time, from DEVICE.md's predicted H100 float32 rate for the base model (~590 model-steps/s at 81 GFLOP per step, i.e.
~48 TFLOP/s effective) scaled by FLOPs per step: about 150 GPU-hours (D = 8: 21 h, D = 16: 42 h, D = 32: 88 h;
bfloat16 roughly halves it). The roofline predictions of the large model itself in groups of 15
(results/roofline/large_*B256_E15_float32.json; a lower bound on time) give 199, 96 and 38 model-steps/s: 10.5, 21.6
and 54.8 h, ~87 h in all. At D = 32 a group of 15 is over the memory budget XLA sets itself for an H100:
compiling for one, rematerialisation brought the program from 116.8 to 64.7 GiB, not under its 60.2 GiB target
(the 139 GiB H200 has room; on an H100, a smaller `--max_group_size`). A multi-lease job, best started at D = 8
(`--cells` or `--shard`). `--dry_run` prints the plan, its model-steps and TFLOP, and the roofline H100 time.
"""

import math
from pathlib import Path

from icl_regression.config import base_config, config_file, config_variant, model_size

CPU_DIMS = (1, 2, 4)
CPU_KAPPAS = (1, 2, 3, 4, 6)  # M = κ·D
CPU_EXTRA_KAPPAS = {1: (8, 12, 16, 24), 2: (8,)}  # D = 1 still memorises at M = 6; D = 2's M = 16 is a budgets cell
CPU_SEEDS = (0, 1, 2)
PAPER_DIMS = (8, 16, 32)
PAPER_LOG2_KAPPAS = tuple(range(5, 14)) + (7.5, 8.5, 9.5, 10.5, 11.5)  # M = D·2^j
PAPER_SEEDS = (0,)


def _grid(dim, context_len, noise_std, num_tasks, seeds):
    return {"data": {"dim": (dim,), "context_len": (context_len,), "noise_std": (noise_std,),
                     "num_tasks": tuple(num_tasks) + ("inf",)},
            "train": {"seed": tuple(seeds)}}


def _noise_std(dim: int, reference_dim: int, reference_variance: float = 0.25) -> float:
    """σ keeping the reference dimension's signal-to-noise D/σ²; exact (0.5) at the reference."""
    return 0.5 if dim == reference_dim else math.sqrt(reference_variance * dim / reference_dim)


def cpu_config():
    # 2 layers × 32, lr 3e-3, batch 64 (set below), 2,500 steps
    config = config_file(Path(__file__).with_name("cpu_reference.py")).get_config()
    config.train.batch_size = 128
    config.sweep.grid = base_config().__class__()
    config.sweep.grids = tuple(_grid(d, 4 * d, _noise_std(d, 2),
                                     [k * d for k in CPU_KAPPAS + CPU_EXTRA_KAPPAS.get(d, ())], CPU_SEEDS)
                               for d in CPU_DIMS)
    return config


def paper_config():
    config = base_config()
    config.model.update(model_size("large"))  # 12 layers, d = 256, 4 heads, for every D (as in the paper)
    config.train.steps = 500_000
    config.train.batch_size = 256
    config.train.learning_rate = 1e-3
    config.train.steps_per_call = 500
    config.eval.interval = 5_000
    config.eval.num_sequences = 2**14
    config.eval.batch_size = 2_048
    config.checkpoint.interval = 25_000
    config.sweep = base_config().__class__()
    config.sweep.grid = base_config().__class__()
    config.sweep.grids = tuple(_grid(d, 2 * d, _noise_std(d, 8), sorted({round(d * 2**j) for j in PAPER_LOG2_KAPPAS}),
                                     PAPER_SEEDS) for d in PAPER_DIMS)
    return config


def get_config(variant: str = "cpu"):
    return config_variant(variant, {"cpu": cpu_config, "paper": paper_config})
