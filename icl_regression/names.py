"""The one name table: evaluation sets, predictors, metric keys, run states.

Logs, summaries, analysis and figures all spell these names through this module, never as loose strings.
"""

# Evaluation distributions.
PRETRAIN = "pretrain"  # T_pretrain: uniform over the model's own task pool.
TRUE = "true"  # T_true: fresh Gaussian tasks.
EVAL_SETS = (PRETRAIN, TRUE)

# Predictors.
PT = "pt"  # the pretrained transformer
RIDGE = "ridge"  # Bayes estimator under the Gaussian task prior
DMMSE = "dmmse"  # Bayes estimator under the uniform prior on the pool
PREDICTORS = (PT, RIDGE, DMMSE)

# Distances between predictors, as (name, f, g).
PAIRS = (("pt_ridge", PT, RIDGE), ("pt_dmmse", PT, DMMSE), ("dmmse_ridge", DMMSE, RIDGE))

LABELS = {
    PRETRAIN: "$T_{pretrain}$",
    TRUE: "$T_{true}$",
    PT: "transformer",
    RIDGE: "ridge",
    DMMSE: "dMMSE",
    "pt_ridge": r"$\Delta_{PT,Ridge}$",
    "pt_dmmse": r"$\Delta_{PT,dMMSE}$",
    "dmmse_ridge": r"$\Delta_{dMMSE,Ridge}$",
}


def loss_key(eval_set: str, predictor: str) -> str:
    """Normalised loss L/D of `predictor` against the noisy targets on `eval_set`."""
    return f"{eval_set}/loss/{predictor}"


def delta_key(eval_set: str, pair: str) -> str:
    """Distance Δ between the two predictors of `pair` on `eval_set`."""
    return f"{eval_set}/delta/{pair}"


def all_metric_keys() -> list[str]:
    keys = []
    for eval_set in EVAL_SETS:
        keys += [loss_key(eval_set, p) for p in PREDICTORS]
        keys += [delta_key(eval_set, pair) for pair, _, _ in PAIRS]
    return keys


# The quantity the threshold is read from, and its normaliser.
THRESHOLD_METRIC = delta_key(TRUE, "pt_ridge")
THRESHOLD_SCALE = delta_key(TRUE, "dmmse_ridge")
BOOTSTRAP_KEYS = (THRESHOLD_METRIC, THRESHOLD_SCALE)

# Run and sweep-cell states.
PENDING = "pending"
RUNNING = "running"
DONE = "done"
DIVERGED = "diverged"
RUN_STATES = (PENDING, RUNNING, DONE, DIVERGED)

# Files of the results store.
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
CHECKPOINT_DIR = "checkpoints"
HEARTBEAT_FILE = "RUNNING"  # who trains the run now: host, pid, since (information; the lock decides)
LOCK_FILE = "LOCK"  # flock'ed by the process that trains the run (released by the kernel if it dies)
DIVERGENCE_FILE = "divergence.json"  # step, reason and last finite loss of a diverged run
SWEEP_INDEX_FILE = "sweep_index.json"
SWEEP_SUMMARY_FILE = "sweep_summary.json"
SWEEP_CONFIG_FILE = "sweep_config.json"
SWEEP_CONFIG_HISTORY_FILE = "sweep_config_history.jsonl"  # every config the sweep folder has been run with
SWEEP_RATE_FILE = "sweep_rate.json"  # the training rate this sweep measured (for --dry_run time estimates)
RUNS_DIR = "runs"

# Facts about a run's training health, in its summary and in the sweep summary's rows.
DIVERGENCE = "divergence"  # None, or {"step", "reason", "last_finite_loss"}: the first non-finite loss or gradient
RUNAWAY = "runaway"  # True when the final L/D on T_true exceeds RUNAWAY_FACTOR × the predict-zero L/D
RUNAWAY_FACTOR = 100.0
NONFINITE_LOSS = "non-finite loss"
NONFINITE_GRADIENT = "non-finite gradient"
