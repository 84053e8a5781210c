"""The paper's diversity sweep with the small model (SPEC experiment 1; GPU issue "reproduce the threshold").

    python experiments/sweep.py --config=experiments/configs/paper_small.py --workdir=runs/paper_small --dry_run
    python experiments/sweep.py --config=experiments/configs/paper_small.py --workdir=runs/paper_small --shard=0/4

Small transformer (4 layers, d = 64, 2 heads), D = 8, K = 16, σ² = 0.25, Adam lr 1e-3, triangle schedule, 500k
steps, batch 256 and 512, M = 2^2 … 2^16 (every half power of two between 2^8 and 2^14) and ∞, evaluation every 5k
steps on 2^14 sequences per distribution (the same sequences for every model), one seed. 22 values of M × 2 batch
sizes = 44 models × 500k steps: a GPU job spread over several leases (each shard resumes from its checkpoints).
What it should show (the paper, Fig. 2): at the smaller budget the crossing of Δ^{T_true}_{PT,Ridge} between batch
256 and 512 near M* ≈ 2^11 … 2^13.

Variant `:quick` is the GPU quick profile: base model (8 layers, d = 128), 20k steps, batch 256, M = 2^4, 2^6 …
2^16 and ∞ (8 models in one program); a first look at the transition, where Δ^{T_true}_{PT,Ridge} falls from
dMMSE-like to ridge-like, with the midpoint estimate (one budget, so no crossing). Time: 160k model-steps, about
7 minutes on one H100 even at the 361 steps/s of the paper's one-model-per-program code (measured on this
workplace's H100), less with the ensemble; not yet measured with this suite (no GPU lent to its sessions so far).
"""

from icl_regression.config import base_config, model_size


def _num_tasks_grid():
    dense = [round(2 ** (e / 2)) for e in range(16, 29)]  # 2^8 … 2^14 in half powers
    return tuple(sorted(set([2**e for e in range(2, 8)] + dense + [2**15, 2**16]))) + ("inf",)


def get_config(variant: str = ""):
    config = base_config()
    config.model.update(model_size("small"))  # 4 layers, d = 64, 2 heads
    config.model.compute_dtype = "float32"  # switch to bfloat16 only where it is shown not to change the science
    config.train.steps = 500_000  # paper: 500k steps
    config.train.learning_rate = 1e-3  # paper: Adam 1e-3, triangle schedule (50% warm-up)
    config.train.steps_per_call = 500  # steps per compiled call on the GPU
    config.eval.interval = 5_000  # evaluation every 5k steps (dynamics resolution)
    config.eval.num_sequences = 2**14  # per distribution
    config.eval.batch_size = 4_096
    config.eval.num_bootstrap = 200
    config.checkpoint.interval = 25_000  # a lease of ≤ 30 min resumes from these

    config.sweep = base_config().__class__()
    config.sweep.grid = base_config().__class__()
    config.sweep.grid.data = base_config().__class__(dict(num_tasks=_num_tasks_grid()))
    config.sweep.grid.train = base_config().__class__(dict(batch_size=(256, 512), seed=(0,)))

    if variant == "quick":
        config.model.update(model_size("base"))
        config.train.steps = 20_000
        config.eval.interval = 1_000
        config.eval.num_sequences = 4_096
        config.checkpoint.interval = 5_000
        config.sweep.grid.data.num_tasks = tuple(2**e for e in range(4, 17, 2)) + ("inf",)
        config.sweep.grid.train.batch_size = (256,)
    elif variant:
        raise ValueError(f"unknown variant {variant!r}; allowed: '' or 'quick'")
    return config
