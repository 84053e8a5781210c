"""The CPU main job: a real diversity sweep small enough for 2 CPU cores in a few minutes.

    python experiments/sweep.py --config=experiments/configs/cpu_demo.py --workdir=runs/cpu_demo

A 2-layer, width-32 transformer on D = 4, K = 8 regression (σ² = 0.25), trained on pools of M = 2 … 256 tasks and
M = ∞ at two data budgets (batch 64 and 128), all models of a budget in one compiled program. Prints a table of the
cells, the threshold both ways with bootstrap intervals, and writes `sweep.png` / `sweep.pdf` in the workdir.
"""

from icl_regression.config import base_config


def get_config():
    config = base_config()
    config.data.dim = 2  # D: small, so that the transition happens at small M and within a short run
    config.data.context_len = 8  # K = 4D: enough positions past D for ridge to pull away from dMMSE
    config.data.noise_std = 0.5  # σ² = 0.25, the paper's noise
    config.model.num_layers = 2  # a tiny transformer (the paper's small model is 4 layers, d = 64)
    config.model.d_model = 32
    config.model.num_heads = 2
    config.train.steps = 2_500  # short: a threshold is only meaningful with its training budget stated
    config.train.batch_size = 64  # overridden by the grid below
    config.train.learning_rate = 1e-3  # paper's Adam lr and triangle schedule
    config.train.steps_per_call = 100  # steps per compiled call
    config.eval.interval = 250  # evaluation every 250 steps, for the dynamics (t* resolution)
    config.eval.num_sequences = 2_048  # evaluation sequences per distribution
    config.eval.batch_size = 2_048
    config.eval.num_bootstrap = 200  # bootstrap replicates of the final Δ, for the threshold interval
    config.checkpoint.interval = 1_000  # checkpoints every 1000 steps (an interrupted sweep resumes from them)

    config.sweep = base_config().__class__()
    config.sweep.grid = base_config().__class__()
    config.sweep.grid.data = base_config().__class__()
    config.sweep.grid.data.num_tasks = (1, 2, 4, 8, 16, 32, 64, "inf")  # M = 2^0 … 2^6 and ∞
    config.sweep.grid.train = base_config().__class__()
    config.sweep.grid.train.batch_size = (64, 128)  # two data budgets, B and 2B, for the crossing estimate
    config.sweep.grid.train.seed = (0,)  # one seed: intervals come from bootstrapping evaluation sequences
    return config
