"""Training dynamics on the CPU: does the model approach ridge and then leave it (SPEC, the dynamics experiment)?

    nice -n 10 python experiments/sweep.py --config=experiments/configs/cpu_dynamics.py:fine \
        --workdir=runs/cpu_dynamics_fine
    nice -n 10 python experiments/sweep.py --config=experiments/configs/cpu_dynamics.py --workdir=runs/cpu_dynamics

The CPU reference setting (cpu_reference.py) (D = 2, K = 8, 2-layer width-32 transformer, σ² = 0.25, Adam 3e-3, triangle schedule)
trained 4× longer (10,000 steps, batch 64), evaluated every 250 steps, three seeds (each seed its own nested pool).
Default grid: M = 4, 6, 8, 16, 32, 64 (around and above the reference setting's threshold); `:fine`: M = 5 … 10, where one
seed of the earlier single-seed runs turned from ridge to its pool within the run. The dynamics block
(`icl_regression/dynamics.py`) gives, per M, t* three ways (closest approach to ridge, lowest T_true loss, the step
the model's ridge weight a falls through 1/2) with bootstrap intervals over seeds and evaluation sequences, whether M
is transient, monotone or unresolved and why, and t* ∝ M^α for each definition over `sweep.analysis.fit_num_tasks`
(empty: the transient M).

Measured on the shared 2-core development machine (load ~19 from other jobs, nice 10), both sweeps at once:
`:fine` (18 models in one program) 1 h 44 min wall; the default grid's 12 cells of M = 4, 16, 32, 64 80 min 54 s
wall (17 min CPU); its M = 6 and 8 cells are the `:fine` runs (same configs, same folders), copied rather than
trained twice. On a quiet machine each sweep of 18 models should take about 25–30 minutes (one seed of 6–8 models
took 9–10). results/cpu_dynamics and results/cpu_dynamics_fine hold the runs, figures and run_log.txt.

What it shows. Seed to seed (pool to pool) the dynamics differ more than M to M: at M = 6 seed 0 comes within Δ = 0.22
of ridge at t* ≈ 3,250 and turns to its pool (Δ rises by 0.13 [0.10, 0.16]; its weight a falls through 1/2 at 6,000),
seed 1 is dMMSE-like from the start (a ≈ 0) and seed 2 is still approaching ridge at 10,000. Transient single seeds:
seed 0 at M = 6 (t* ≈ 3,250), seed 2 at M = 4 (3,570; rise 0.04 [0.005, 0.07]); seed 0 at M = 7 (t* ≈ 5,200) rises by
0.011 [−0.007, 0.028], within its noise (a single seed's rise is read from the evaluations its t* was not located on:
dynamics._split_rise). Averaged over the three seeds no M has a rise after t* that exceeds its noise (M = 4 and 6:
unresolved, rises −0.04 [−0.21, 0.13] and −0.02 [−0.15, 0.10]; every other M still approaching ridge at the end), so the
default fit set is empty and no α is estimated by any definition: this setting cannot tell t* ∝ M^0.47 (Raventós et al.)
from a superlinear switch time (Wurgaft et al.). By (c) the model is never more ridge- than dMMSE-like below M = 16: the
seed-mean ridge weight a on T_true peaks at 0.29–0.43 for M ≤ 10 (0.52 at 16, 0.48 at 32, 0.66 at 64), and the best
mixture a·ridge + (1 − a)·dMMSE leaves 50–93% of the model's distance to the nearer strategy unexplained at the end: at
this size the model is close to neither strategy, nor to a blend of the two.
"""

import importlib.util
from pathlib import Path


def _cpu_reference_config():
    """The CPU reference setting (cpu_reference.py; config files are loaded by path, so its sibling is too), with the
    fields these sweeps ran with pinned: D = 2, K = 8, the 2-layer width-32 transformer, 2,048 evaluation sequences."""
    spec = importlib.util.spec_from_file_location("cpu_reference", Path(__file__).with_name("cpu_reference.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    config.data.dim, config.data.context_len, config.data.noise_std = 2, 8, 0.5
    config.model.num_layers, config.model.d_model, config.model.num_heads = 2, 32, 2
    config.train.learning_rate, config.train.steps_per_call = 3e-3, 100
    config.eval.interval, config.eval.num_sequences, config.eval.batch_size = 250, 2_048, 2_048
    config.eval.num_bootstrap = 200
    config.sweep.grid.train.seed = (0,)
    return config


def get_config(variant: str = ""):
    config = _cpu_reference_config()
    config.train.steps = 10_000  # 4× the reference setting: room for a late turn towards the pool
    config.checkpoint.interval = 2_500
    config.sweep.grid.data.num_tasks = (4, 6, 8, 16, 32, 64)  # around and above the reference setting's threshold
    config.sweep.grid.train.batch_size = (64,)  # one budget: dynamics, not the crossing
    config.sweep.grid.train.seed = (0, 1, 2)  # seed-to-seed spread is most of the uncertainty of t*
    config.sweep.analysis = config.__class__()  # a ConfigDict (or the stand-in where ml_collections is absent)
    config.sweep.analysis.fit_num_tasks = ()  # M values of the t* ∝ M^α fits; empty: the transient M
    if variant == "fine":
        config.sweep.grid.data.num_tasks = (5, 6, 7, 8, 9, 10)  # dense where the model turns within 10k steps
    elif variant:
        raise ValueError(f"unknown variant {variant!r}; allowed: '' or 'fine'")
    return config
