"""Smoothed dMMSE (paper Fig 12): for each pool of a stored sweep, the smoothing std s* that does best on T_true
(searched on a T_true set of its own), and the trained model against smoothed dMMSE at s* on both evaluation
distributions; writes <workdir>/analysis/smoothing.json and the figure. Needs no checkpoints (the model's
numbers are its stored final metrics).

    python experiments/smoothing.py --workdir=results/cpu_reference
"""

from pathlib import Path

from absl import flags

from icl_regression import cli, estimator_plots, smoothing

_WORKDIR = flags.DEFINE_string("workdir", None, "Sweep folder (runs/, sweep_config.json).", required=True)
_NUM_TASKS = flags.DEFINE_list("num_tasks", None, "M values to analyse (default: every finite M).")
_BATCH_SIZE = flags.DEFINE_list("batch_size", None, "Batch sizes whose runs to compare (default: all).")
_GRID_MIN = flags.DEFINE_float("grid_min", 0.01, "Smallest s/τ of the search grid (s = 0 is always tried).")
_GRID_MAX = flags.DEFINE_float("grid_max", 3.0, "Largest s/τ of the search grid.")
_GRID_POINTS = flags.DEFINE_integer("grid_points", 25, "Points of the geometric search grid.")
_REFINEMENTS = flags.DEFINE_integer("refinements", 2, "Finer grids around the best point.")
_SEARCH_SEQUENCES = flags.DEFINE_integer("search_sequences", 0, "T_true sequences to choose s* on (0: as many "
                                         "as the runs' evaluation sets).")
_FIGURE = flags.DEFINE_bool("figure", True, "Also draw <workdir>/figures/smoothing.{png,pdf}.")


def main():
    try:
        options = smoothing.SmoothingOptions(_GRID_MIN.value, _GRID_MAX.value, _GRID_POINTS.value,
                                             _REFINEMENTS.value, _SEARCH_SEQUENCES.value)
        batch_sizes = cli.int_list(_BATCH_SIZE, minimum=1)
        smoothing.run_smoothing(Path(_WORKDIR.value), _NUM_TASKS.value, batch_sizes, options)
        if _FIGURE.value:
            print("\n".join(map(str, estimator_plots.write_analysis_figure("smoothing", _WORKDIR.value))))
    except ValueError as e:  # StoreError and ConfigError: reported by cli.run
        raise cli.UsageError(str(e))


if __name__ == "__main__":
    cli.run_without_config(main)
