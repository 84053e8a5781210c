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

# Predictors that analyses evaluate on demand (icl_regression/predictors.py), never in every training evaluation.
OLS = "ols"  # minimum-norm least squares
RIDGE_LAMBDA = "ridge_lambda"  # ridge with a chosen λ (option `lam`), e.g. a mismatched prior variance
SMOOTHED_DMMSE = "smoothed_dmmse"  # posterior mean under the mixture of N(w(i), s²I) over the pool
LAPLACE_MMSE = "laplace_mmse"  # posterior mean under i.i.d. Laplace task coordinates (Gibbs sampler)
ANALYSIS_PREDICTORS = (OLS, RIDGE_LAMBDA, SMOOTHED_DMMSE, LAPLACE_MMSE)

# Distances between predictors, as (name, f, g).
PAIRS = (("pt_ridge", PT, RIDGE), ("pt_dmmse", PT, DMMSE), ("dmmse_ridge", DMMSE, RIDGE))
# ... and those of the Laplace comparison (a sweep trained on Laplace tasks against the Laplace posterior mean).
LAPLACE_PAIRS = (("pt_ridge", PT, RIDGE), ("pt_dmmse", PT, DMMSE), ("pt_laplace_mmse", PT, LAPLACE_MMSE),
                 ("laplace_mmse_ridge", LAPLACE_MMSE, RIDGE))

LABELS = {
    PRETRAIN: "$T_{pretrain}$",
    TRUE: "$T_{true}$",
    PT: "transformer",
    RIDGE: "ridge",
    DMMSE: "dMMSE",
    OLS: "least squares",
    RIDGE_LAMBDA: r"ridge ($\lambda$ chosen)",
    SMOOTHED_DMMSE: "smoothed dMMSE",
    LAPLACE_MMSE: "Laplace posterior mean",
    "pt_ridge": r"$\Delta_{PT,Ridge}$",
    "pt_dmmse": r"$\Delta_{PT,dMMSE}$",
    "dmmse_ridge": r"$\Delta_{dMMSE,Ridge}$",
    "pt_laplace_mmse": r"$\Delta_{PT,Laplace}$",
    "laplace_mmse_ridge": r"$\Delta_{Laplace,Ridge}$",
    "mixture/weight": "ridge weight a",
    "mixture/residual": "mixture residual",
}


def loss_key(eval_set: str, predictor: str) -> str:
    """Normalised loss L/D of `predictor` against the noisy targets on `eval_set`."""
    return f"{eval_set}/loss/{predictor}"


def delta_key(eval_set: str, pair: str) -> str:
    """Distance Δ between the two predictors of `pair` on `eval_set`."""
    return f"{eval_set}/delta/{pair}"


def mixture_weight_key(eval_set: str) -> str:
    """The weight a ∈ [0, 1] that best writes the model as a·ridge + (1 − a)·dMMSE on `eval_set` (least squares over
    sequences, per position); NaN where ridge = dMMSE (M = ∞)."""
    return f"{eval_set}/mixture/weight"


def mixture_residual_key(eval_set: str) -> str:
    """What that best mixture leaves unexplained: E[(1/D)(PT − a·ridge − (1 − a)·dMMSE)²], per position, like Δ."""
    return f"{eval_set}/mixture/residual"


def all_metric_keys() -> list[str]:
    keys = []
    for eval_set in EVAL_SETS:
        keys += [loss_key(eval_set, p) for p in PREDICTORS]
        keys += [delta_key(eval_set, pair) for pair, _, _ in PAIRS]
        keys += [mixture_weight_key(eval_set), mixture_residual_key(eval_set)]
    return keys


# The quantity the threshold is read from (the crossing of two budgets), the distance it is set against for the
# midpoint (where the model is as far from dMMSE as from ridge), and the scale of the transition.
THRESHOLD_METRIC = delta_key(TRUE, "pt_ridge")
MIDPOINT_METRIC = delta_key(TRUE, "pt_dmmse")
THRESHOLD_SCALE = delta_key(TRUE, "dmmse_ridge")
BOOTSTRAP_KEYS = (THRESHOLD_METRIC, THRESHOLD_SCALE, MIDPOINT_METRIC)  # stored per run: bootstrap replicates
# Metrics of the training dynamics (t* three ways) whose bootstrap replicates over evaluation sequences are stored
# at every evaluation (metrics record field "bootstrap"): Δ^{T_true}_{PT,Ridge}, the model's T_true loss, and its
# ridge weight a on T_true, each averaged over positions.
DYNAMICS_BOOTSTRAP_KEYS = (THRESHOLD_METRIC, loss_key(TRUE, PT), mixture_weight_key(TRUE))

# Run and sweep-cell states.
PENDING = "pending"
RUNNING = "running"
DONE = "done"
DIVERGED = "diverged"
RUN_STATES = (PENDING, RUNNING, DONE, DIVERGED)

# Files of the results store.
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
METRICS_FILE_GZ = "metrics.jsonl.gz"  # a finished run's metrics, compressed for committing (readers take either)
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
ANALYSIS_DIR = "analysis"  # analyses of a stored sweep, beside its runs: <workdir>/analysis/<file>
INTERPOLATION_FILE = "interpolation.json"  # error along paths between pool tasks (paper Fig 5)
SMOOTHING_FILE = "smoothing.json"  # the transformer against the best smoothed dMMSE (paper Fig 12)
LAPLACE_FILE = "laplace_comparison.json"  # a Laplace-task sweep against the Laplace posterior mean (paper Fig 14)

# Facts about a run's training health, in its summary and in the sweep summary's rows.
DIVERGENCE = "divergence"  # None, or {"step", "reason", "last_finite_loss"}: the first non-finite loss or gradient
RUNAWAY = "runaway"  # True when the final L/D on T_true exceeds RUNAWAY_FACTOR × the predict-zero L/D
RUNAWAY_FACTOR = 100.0
NONFINITE_LOSS = "non-finite loss"
NONFINITE_GRADIENT = "non-finite gradient"
