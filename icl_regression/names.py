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


# The quantity the threshold is read from (the crossing of two budgets), the distance it is set against for the
# midpoint (where the model is as far from dMMSE as from ridge), and the scale of the transition.
THRESHOLD_METRIC = delta_key(TRUE, "pt_ridge")
MIDPOINT_METRIC = delta_key(TRUE, "pt_dmmse")
THRESHOLD_SCALE = delta_key(TRUE, "dmmse_ridge")
BOOTSTRAP_KEYS = (THRESHOLD_METRIC, THRESHOLD_SCALE, MIDPOINT_METRIC)  # stored per run: bootstrap replicates

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
HEARTBEAT_FILE = "RUNNING"
SWEEP_INDEX_FILE = "sweep_index.json"
SWEEP_SUMMARY_FILE = "sweep_summary.json"
SWEEP_CONFIG_FILE = "sweep_config.json"
RUNS_DIR = "runs"
