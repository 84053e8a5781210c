"""A single run at the paper's protocol: base model, D = 8, K = 16, σ² = 0.25, batch 256, 500k steps.

    python experiments/train.py --config=experiments/configs/default.py --workdir=runs/single \
        --config.data.num_tasks=4096

Every field, with its meaning, is in icl_regression/config.py (DataConfig, ModelConfig, TrainConfig, EvalConfig,
CheckpointConfig). On one H100 a single base model takes about 23 minutes at the paper code's speed (361 steps/s);
on the 2-core CPU (0.8 steps/s measured, results/benchmarks) it is out of reach: use `cpu_demo.py` there. What it
should show (the paper): well below the threshold the model tracks dMMSE on T_pretrain; at M = ∞ it tracks ridge
on T_true.
"""

from icl_regression.config import base_config


def get_config():
    config = base_config()
    config.data.num_tasks = 0  # M; 0 means ∞ (a fresh task per sequence)
    config.data.nested_pools = True  # the pool for M is the first M rows of the seed's pool
    config.train.steps = 500_000  # paper: 500k steps
    config.train.batch_size = 256  # paper: 256 (also 512, 1024 in the diversity sweep)
    config.train.learning_rate = 1e-3  # paper: Adam, lr 1e-3, triangle schedule
    config.eval.interval = 5_000  # evaluate every 5k steps
    config.eval.num_sequences = 4_096  # per distribution
    config.checkpoint.interval = 25_000
    return config
