"""Interpolated tasks (paper Fig 5): L/D of the trained model, dMMSE and ridge along paths between pairs of pool
tasks, for the chosen runs of a stored sweep; writes <workdir>/analysis/interpolation.json and the figure.

    python experiments/interpolation.py --workdir=results/cpu_reference
    python experiments/interpolation.py --workdir=runs/my_sweep --num_tasks=2,8,32 --batch_size=256

Needs the runs' final parameters: their checkpoints, or (for committed sweeps, whose checkpoints are not committed)
a deterministic retraining of their compiled groups into --scratch, verified against the stored metrics.
"""

from pathlib import Path

from absl import flags

from icl_regression import cli, estimator_plots, interpolation, trained

_WORKDIR = flags.DEFINE_string("workdir", None, "Sweep folder (runs/, sweep_config.json).", required=True)
_SCRATCH = flags.DEFINE_string("scratch", None, "Folder for retrained runs when checkpoints are missing "
                               "(default: runs/retrained/<workdir name>).")
_RETRAIN = flags.DEFINE_bool("retrain", True, "Retrain runs without a final checkpoint (else stop and say so).")
_RETRAIN_RTOL = flags.DEFINE_float("retrain_rtol", 0.0, "Accept retrained runs whose final metrics are within this "
                                   "relative tolerance of the stored ones (0: every record exactly equal).")
_NUM_TASKS = flags.DEFINE_list("num_tasks", None, "M values to analyse (default: every finite M >= 2).")
_BATCH_SIZE = flags.DEFINE_list("batch_size", None, "Batch sizes to analyse (default: the largest).")
_NUM_PAIRS = flags.DEFINE_integer("num_pairs", 64, "Pairs of pool tasks per run.")
_NUM_ALPHAS = flags.DEFINE_integer("num_alphas", 21, "α values in [0, 1].")
_SEQUENCES = flags.DEFINE_integer("sequences_per_pair", 32, "Sequences per pair (reused for every α).")
_FIGURE = flags.DEFINE_bool("figure", True, "Also draw <workdir>/figures/interpolation.{png,pdf}.")


def main():
    try:
        options = interpolation.InterpolationOptions(_NUM_PAIRS.value, _NUM_ALPHAS.value, _SEQUENCES.value)
        batch_sizes = cli.int_list(_BATCH_SIZE, minimum=1)
        scratch = cli.scratch_folder(_SCRATCH.value, _RETRAIN.value, _WORKDIR.value)
        interpolation.run_interpolation(Path(_WORKDIR.value), scratch, _NUM_TASKS.value, batch_sizes, options,
                                        _RETRAIN_RTOL.value)
        if _FIGURE.value:
            print("\n".join(map(str, estimator_plots.write_analysis_figure("interpolation", _WORKDIR.value))))
    except trained.MissingCheckpoints as e:  # no scratch folder: --retrain=false
        raise cli.UsageError(e.retraining_off())
    except ValueError as e:  # StoreError and ConfigError: reported by cli.run
        raise cli.UsageError(str(e))


if __name__ == "__main__":
    cli.run_without_config(main)
