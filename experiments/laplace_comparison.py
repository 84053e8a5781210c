"""A sweep trained on Laplace tasks (paper Fig 14) against the Laplace posterior mean, ridge and dMMSE: L/D of
each and the distances Δ between the model and each, on both evaluation distributions; writes
<workdir>/analysis/laplace_comparison.json and the figure.

    python experiments/sweep.py --config=experiments/configs/cpu_laplace.py --workdir=runs/cpu_laplace
    python experiments/laplace_comparison.py --workdir=runs/cpu_laplace

Needs the runs' final parameters: their checkpoints, or a deterministic retraining of their compiled groups into
--scratch, verified against the stored metrics.
"""

from pathlib import Path

from absl import flags

from icl_regression import cli, estimator_plots, laplace_comparison, trained

_WORKDIR = flags.DEFINE_string("workdir", None, "Sweep folder trained with data.task_prior='laplace'.",
                               required=True)
_SCRATCH = flags.DEFINE_string("scratch", None, "Folder for retrained runs when checkpoints are missing "
                               "(default: runs/retrained/<workdir name>).")
_RETRAIN = flags.DEFINE_bool("retrain", True, "Retrain runs without a final checkpoint (else stop and say so).")
_RETRAIN_RTOL = flags.DEFINE_float("retrain_rtol", 0.0, "Accept retrained runs whose final metrics are within this "
                                   "relative tolerance of the stored ones (0: every record exactly equal).")
_NUM_TASKS = flags.DEFINE_list("num_tasks", None, "M values to analyse (default: all).")
_BATCH_SIZE = flags.DEFINE_list("batch_size", None, "Batch sizes to analyse (default: all).")
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", laplace_comparison.DEFAULT_NUM_SAMPLES,
                                    "Gibbs sweeps per chain for the Laplace posterior mean (after burn-in).")
_BURN_IN = flags.DEFINE_integer("burn_in", laplace_comparison.DEFAULT_BURN_IN, "Gibbs sweeps discarded first.")
_FIGURE = flags.DEFINE_bool("figure", True, "Also draw <workdir>/figures/laplace_comparison.{png,pdf}.")


def main():
    cli.at_least(_NUM_SAMPLES, 1)
    cli.at_least(_BURN_IN, 0)
    scratch = cli.scratch_folder(_SCRATCH.value, _RETRAIN.value, _WORKDIR.value)
    try:
        batch_sizes = cli.int_list(_BATCH_SIZE, minimum=1)
        laplace_comparison.run_laplace_comparison(Path(_WORKDIR.value), scratch, _NUM_TASKS.value, batch_sizes,
                                                  _NUM_SAMPLES.value, _BURN_IN.value, _RETRAIN_RTOL.value)
        if _FIGURE.value:
            print("\n".join(map(str, estimator_plots.write_analysis_figure("laplace_comparison", _WORKDIR.value))))
    except trained.MissingCheckpoints as e:  # no scratch folder: --retrain=false
        raise cli.UsageError(e.retraining_off())
    except ValueError as e:  # StoreError and ConfigError: reported by cli.run
        raise cli.UsageError(str(e))


if __name__ == "__main__":
    cli.run_without_config(main)
