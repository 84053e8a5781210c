"""Training dynamics on the CPU: does the model approach ridge and then leave it (SPEC, the dynamics experiment)?

    nice -n 10 python experiments/sweep.py --config=experiments/configs/cpu_dynamics.py:fine \
        --workdir=runs/cpu_dynamics_fine
    nice -n 10 python experiments/sweep.py --config=experiments/configs/cpu_dynamics.py --workdir=runs/cpu_dynamics

The CPU main job's setting (D = 2, K = 8, 2-layer width-32 transformer, σ² = 0.25, Adam 3e-3, triangle schedule)
trained 4× longer (10,000 steps, batch 64), evaluated every 250 steps, three seeds. Default grid: M = 4, 6, 8, 16,
32, 64 (around and above the main job's threshold); `:fine`: M = 5 … 10, where the model approaches ridge and then
turns to its pool within the run. The dynamics block (`icl_regression/dynamics.py`) gives, per M, t* three ways
(closest approach to ridge, lowest T_true loss, the step the model's ridge weight a falls through 1/2) with
bootstrap intervals over seeds and evaluation sequences, whether M is transient, monotone or unresolved and why,
and t* ∝ M^α for each definition over `sweep.analysis.fit_num_tasks` (empty: the transient M).
"""

import importlib.util
from pathlib import Path

import ml_collections


def _cpu_demo_config():
    """The main job's config (config files are loaded by path, so its sibling is too)."""
    spec = importlib.util.spec_from_file_location("cpu_demo", Path(__file__).with_name("cpu_demo.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def get_config(variant: str = ""):
    config = _cpu_demo_config()
    config.train.steps = 10_000  # 4× the main job: room for a late turn towards the pool
    config.checkpoint.interval = 2_500
    config.sweep.grid.data.num_tasks = (4, 6, 8, 16, 32, 64)  # around and above the main job's threshold
    config.sweep.grid.train.batch_size = (64,)  # one budget: dynamics, not the crossing
    config.sweep.grid.train.seed = (0, 1, 2)  # seed-to-seed spread is most of the uncertainty of t*
    config.sweep.analysis = ml_collections.ConfigDict()
    config.sweep.analysis.fit_num_tasks = ()  # M values of the t* ∝ M^α fits; empty: the transient M
    if variant == "fine":
        config.sweep.grid.data.num_tasks = (5, 6, 7, 8, 9, 10)  # dense where the model turns within 10k steps
    elif variant:
        raise ValueError(f"unknown variant {variant!r}; allowed: '' or 'fine'")
    return config
