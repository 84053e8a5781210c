"""The paper's diversity sweep with the small model (SPEC experiment 1; GPU issue "reproduce the threshold").

    python experiments/sweep.py --config=experiments/configs/paper_small.py --workdir=runs/paper_small --dry_run
    python experiments/sweep.py --config=experiments/configs/paper_small.py --workdir=runs/paper_small

The paper's protocol: small transformer (4 layers, d = 64, 2 heads), D = 8, K = 16, σ² = 0.25, Adam lr 1e-3,
triangle schedule (50% warm-up), 500k steps, batch 256 and 512, an independent task pool per M as in the paper
(`data.nested_pools = False`), M = 2^2, 2^4, 2^6, 2^8, 2^9, 2^10, 2^10.5, 2^11, 2^11.5, 2^12, 2^12.5, 2^13, 2^14,
2^16 and ∞, evaluation every 5k steps on 2^14 sequences per distribution in float32 (the same T_true sequences
for every model), one seed. 15 values of M × 2 batch sizes = 30 models × 500k steps = 15M model-steps, half of
them at batch 512 (twice the work per step): about 22.5M batch-256 model-steps. At the float32 rate predicted for
an H100 (~2,240 small-model model-steps/s at batch 256, ../shared/DEVICE.md) that is ~2.8 GPU-hours, spread over
leases (15 minutes of device time each, machine start included: about 8 minutes of training per lease, so some 20
leases; the fast path, once shown not to change the science (issue "fast training"), would cut that several-fold).
One device call per lease, which starts, waits for the clean stop and packs (experiments/gpu/lease.sh):

    bash experiments/gpu/lease.sh all runs/paper_small experiments/configs/paper_small.py 8m --max_group_size=8

`--max_group_size=8`: the unfinished models' checkpoints (params + Adam state, 2.3 MiB per small model) must
travel back to the next lease with the working tree, 64 MiB in all with the tracked files (24 MiB on 2026-11-30,
finished runs' metrics compressed; the committed results of this sweep add about 0.1 MiB per run compressed,
0.6 MiB plain): 8 models (18.6 MiB) fit the 20 MiB that `lease.sh` packs, 10 (23 MiB) do not. A lease stops at its deadline between compiled calls (500 steps) and checkpoints
there, whatever `checkpoint.interval`. The compute mode is recorded in the config
(`model.compute_dtype`); one sweep folder never mixes modes, since the grid does not vary the model section.
What it should show (the paper, Fig. 2): the crossing of Δ^{T_true}_{PT,Ridge} between batch 256 and 512 near
M* ≈ 2^11 … 2^13.

Variant `:seeds`: the default grid plus seeds 1 and 2 for the M values within one octave of the crossing (default
2^11 … 2^13 in half powers, around the paper's crossing; edit `SEED_GRID_NUM_TASKS` to the first sweep's measured
crossing), both batch sizes: 20 more models × 500k steps. Run it in the same folder with `--extend`; its config
holds the seed-0 grid too, so the folder's stored config, its summary and `--summarize` cover all 50 cells and the
threshold's interval covers seed-to-seed spread.

Variant `:quick` is the GPU quick profile: base model (8 layers, d = 128), 20k steps, batch 256, M = 2^4, 2^6 …
2^16 and ∞ (8 models in one program); a first look at the transition, where Δ^{T_true}_{PT,Ridge} falls from
dMMSE-like to ridge-like, with the midpoint estimate (one budget, so no crossing). Time: 160k model-steps, about
7 minutes on one H100 even at the 361 steps/s of the paper's one-model-per-program code (measured on this
workplace's H100), less with the ensemble; not yet measured with this suite (no GPU lent to its sessions so far).
It must finish inside one device call, in a folder of its own (a base-model checkpoint is 18 MiB: eight of them
can neither come back nor travel to a next lease):

    bash experiments/gpu/lease.sh all runs/paper_quick experiments/configs/paper_small.py:quick 8m
"""

from icl_regression.config import base_config, model_size


def _num_tasks_grid():
    """2^2, 2^4, 2^6, 2^8, 2^9, 2^10, then half powers to 2^13, then 2^14, 2^16 and ∞ (the paper's grid)."""
    exponents = [2, 4, 6, 8, 9, 10, 10.5, 11, 11.5, 12, 12.5, 13, 14, 16]
    return tuple(round(2**e) for e in exponents) + ("inf",)


SEED_GRID_NUM_TASKS = tuple(round(2**e) for e in (11, 11.5, 12, 12.5, 13))  # one octave either side of 2^12


def get_config(variant: str = ""):
    config = base_config()
    config.model.update(model_size("small"))  # 4 layers, d = 64, 2 heads
    config.model.compute_dtype = "float32"  # switch to bfloat16 only where it is shown not to change the science
    config.data.nested_pools = False  # the paper draws an independent pool for each M
    config.train.steps = 500_000  # paper: 500k steps
    config.train.learning_rate = 1e-3  # paper: Adam 1e-3, triangle schedule (50% warm-up)
    config.train.steps_per_call = 500  # steps per compiled call on the GPU
    config.eval.interval = 5_000  # evaluation every 5k steps (dynamics resolution)
    config.eval.num_sequences = 2**14  # per distribution
    config.eval.batch_size = 4_096
    config.eval.num_bootstrap = 200
    config.checkpoint.interval = 25_000  # besides the checkpoint a lease's clean stop writes at its deadline

    config.sweep = base_config().__class__()
    config.sweep.grid = base_config().__class__()
    config.sweep.grid.data = base_config().__class__(dict(num_tasks=_num_tasks_grid()))
    config.sweep.grid.train = base_config().__class__(dict(batch_size=(256, 512), seed=(0,)))

    if variant == "seeds":  # the default grid (seed 0) and, added to it, seeds 1 and 2 near the crossing
        seeds = base_config().__class__()
        seeds.data = base_config().__class__(dict(num_tasks=SEED_GRID_NUM_TASKS))
        seeds.train = base_config().__class__(dict(batch_size=(256, 512), seed=(1, 2)))
        config.sweep.grids = (seeds,)
    elif variant == "quick":
        config.model.update(model_size("base"))
        config.train.steps = 20_000
        config.eval.interval = 1_000
        config.eval.num_sequences = 4_096
        config.checkpoint.interval = 5_000
        config.sweep.grid.data.num_tasks = tuple(2**e for e in range(4, 17, 2)) + ("inf",)
        config.sweep.grid.train.batch_size = (256,)
    elif variant:
        raise ValueError(f"unknown variant {variant!r}; allowed: '', 'seeds' or 'quick'")
    return config
