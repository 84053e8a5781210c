"""Loss landscape (Raventós et al. Fig. 11; SPEC experiment 7): the training-loss barrier along the straight line in
parameter space from each finite-M model to the M = ∞ model, and between two M = ∞ models of different seeds (the
baseline), on the finite model's T_pretrain and on fresh tasks; barrier height and parameter distance against M.

    python experiments/sweep.py --config=experiments/configs/budgets.py:cpu --workdir=runs/cpu_budgets  # the models
    python experiments/landscape.py --config=experiments/configs/landscape.py:cpu --workdir=runs/cpu_budgets \
        --scratch=runs/landscape_scratch

The models are a budgets sweep's (this config is budgets.py's plus a `landscape` section, which training ignores).
Final parameters come from the runs' checkpoints; a committed sweep has none, so each needed run is retrained into
--scratch (its whole compiled group, as the sweep trained it) and must reproduce its stored metrics exactly
(icl_regression.trained.load_trained), else the analysis stops and says so.

Variant `:cpu` (committed in results/cpu_budgets/analysis/landscape.json): the 4N budget (batch 64, 10,000 steps),
every M = 4 … 12 of seeds 1 and 2 against the M = ∞ model of every seed (2 × 3 pairs per M, 2 of them with the same
initialisation), the three ∞-vs-∞ pairs as baseline; 21 points on the path, 2,048 sequences per set. Seed 0's
finite-M runs at that budget are copies of results/cpu_dynamics' runs, made on an earlier machine: retrained here they
differ from step 0 on (at the 1e-7 level, growing to 1e-4), so the retraining check refuses them and they are left out.
From a clean clone the analysis retrains the 4N budget's compiled group (15 runs, 150,000 model-steps; the 11 used
are checked: every evaluation identical, the training loss within 0.8–2.0e-7, float32 rounding of its per-call
average). Measured 2026-11-30 on the 2-core development machine from a `git archive` of the committed folder:
retraining 24 min (beside a test run), then 1.5 min for the paths, and analysis/landscape.json identical to the
committed one; with the checkpoints present the analysis took 22 min on the shared machine under heavy load.
What it shows (results/cpu_budgets/analysis/landscape.json): no pair is linearly connected. Along every path the
L/D on fresh tasks climbs well above both ends (~0.5): barriers on T_true of 0.42–0.67 (mean over pairs per M, same
initialisation) and 0.51–0.67 (other initialisation) for M = 4 … 12, and 0.68 ± 0.05 between two M = ∞ models,
which compute almost the same function (Δ between them 0.025 on T_true). On the finite model's T_pretrain: 0.31–0.62
(same init), 0.62–0.71 (other). The barrier does not grow or shrink with M across the transition (the ratio r =
Δ_PT,Ridge/(Δ_PT,Ridge + Δ_PT,dMMSE) falls from 0.88 at M = 4 to 0.55 at M = 12 at 4N; no M* is located in this
sweep: its summary's midpoint at 4N lies above the grid), so at this scale it does not separate memorising from
generalising solutions. Parameter distances: 18.4–19.7 to the M = ∞
model of the same initialisation, 20.6–22.2 to the others, 21.4 between M = ∞ models (each about the models' own
norm), while Δ between the finite-M model and M = ∞ on T_true falls with M (0.59, 0.37, 0.19, 0.12).

Variant `:paper`: budgets.py:paper's (256, 500k) models (small model, D = 8), 4,096 sequences per set; run it where
that sweep's checkpoints are (the GPU machine): retraining a 500k-step model takes ~4 GPU-minutes each.
"""

import functools
from pathlib import Path

from icl_regression.config import base_config, config_file, config_variant


def get_config(variant: str = "cpu"):
    return config_variant(variant, {"cpu": functools.partial(_config, "cpu"),
                                    "paper": functools.partial(_config, "paper")})


def _config(variant: str):
    """budgets.py's `variant` with the landscape section for its models."""
    paper = variant == "paper"
    config = config_file(Path(__file__).with_name("budgets.py")).get_config(variant)
    config.landscape = base_config().__class__(dict(
        budget=(256, 500_000) if paper else (64, 10_000),  # (batch, steps) of the models compared
        num_tasks=(),  # finite M to include (empty: every finite M of that budget)
        finite_seeds=() if paper else (1, 2),  # seeds of the finite-M models (empty: all); seed 0's CPU runs are copies
        num_points=21,  # α = 0, 0.05, …, 1
        num_sequences=4_096 if paper else 2_048,  # per evaluation set (T_pretrain of the finite model, T_true)
        batch_size=1_024,  # sequences per forward pass
        eval_seed=0,  # seed of the landscape's evaluation stream (rng.Stream.EVAL_TASKS)
    ))
    return config
