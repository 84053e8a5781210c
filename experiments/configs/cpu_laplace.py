"""The CPU demo sweep with Laplace tasks (paper Fig 14): does the threshold exist when tasks are not Gaussian, and
past it does the transformer approach the Bayes estimator of the Laplace prior rather than ridge?

    python experiments/sweep.py --config=experiments/configs/cpu_laplace.py --workdir=runs/cpu_laplace
    python experiments/laplace_comparison.py --workdir=runs/cpu_laplace

Exactly `cpu_demo.py` (2-layer, width-32 transformer, D = 2, K = 8, σ² = 0.25, 2,500 steps, M = 1 … 16 and ∞ at
batch 64 and 128) except `data.task_prior = "laplace"`: every task (pool rows, fresh tasks at M = ∞, the T_true
evaluation set) has i.i.d. Laplace(0, 1/√2) coordinates, the same unit variance as the Gaussian prior. Ridge
(λ = σ²) is then the best linear estimator but not the Bayes one; `experiments/laplace_comparison.py` compares the
trained models with the Laplace posterior mean (`estimators.laplace_preds`), ridge and dMMSE.
"""

import importlib.util
from pathlib import Path


def _cpu_demo_config():
    """The main job's config, loaded by path (config files are run as files, not imported as a package)."""
    spec = importlib.util.spec_from_file_location("cpu_demo", Path(__file__).with_name("cpu_demo.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def get_config():
    config = _cpu_demo_config()
    config.data.task_prior = "laplace"  # i.i.d. Laplace(0, τ/√2) task coordinates: unit variance, heavier tails
    return config
