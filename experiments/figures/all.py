"""Regenerates every figure of a stored sweep as PNG and PDF, in one command: the sweep's own (sweep, dynamics,
per position) and those of every analysis stored beside it in `<workdir>/analysis/` (interpolated tasks, smoothed
dMMSE, the Laplace comparison; budgets, long dynamics, dimension, capacity, final values, loss landscape).

    python experiments/figures/all.py                                   # results/cpu_demo → results/cpu_demo/figures
    python experiments/figures/all.py --workdir=runs/my_sweep --out=/tmp/figures

When the runs changed since sweep_summary.json was written (its fingerprint no longer matches), the sweep is
re-summarised first, with a line saying so: the figures never draw a stale summary. Nothing here trains or runs a
model: every figure is drawn from stored files.
"""

from absl import flags

from icl_regression import cli, estimator_plots, plotting, plotting_experiments, training_experiments

_WORKDIR = flags.DEFINE_string("workdir", "results/cpu_demo", "Sweep results folder (runs/, sweep_summary.json).")
_OUT = flags.DEFINE_string("out", None, "Folder for the PNGs and PDFs (default: <workdir>/figures).")


def main():
    paths = plotting.write_all_figures(_WORKDIR.value, _OUT.value)  # re-summarises first if the runs changed
    stored = set(training_experiments.stored_analyses(_WORKDIR.value))
    for name, (filename, _) in estimator_plots.ANALYSIS_FIGURES.items():
        if filename.removesuffix(".json") in stored:
            paths += estimator_plots.write_analysis_figure(name, _WORKDIR.value, _OUT.value)
    for name in sorted(stored & set(plotting_experiments.FIGURES)):
        paths += plotting_experiments.write_experiment_figures(name, _WORKDIR.value, _OUT.value)
    print("\n".join(str(p) for p in paths))


if __name__ == "__main__":
    cli.run_without_config(main)
