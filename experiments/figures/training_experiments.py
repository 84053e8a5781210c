"""Redraws the figures of the training-side experiments from their stored analyses (`<workdir>/analysis/*.json`),
as PNG and PDF: budgets and long dynamics (Figs. 3, 4), dimension (Fig. 6), capacity (Figs. 7, 13: one per axis),
final values above the threshold (Fig. 10), loss landscape (Fig. 11).

    python experiments/figures/training_experiments.py --workdir=results/cpu_budgets     # every stored analysis
    python experiments/figures/training_experiments.py --workdir=results/cpu_capacity --experiment=capacity
"""

from absl import flags

from icl_regression import cli, plotting_experiments, training_experiments
from icl_regression.store import StoreError

_WORKDIR = flags.DEFINE_string("workdir", "results/cpu_budgets", "Results folder holding analysis/<experiment>.json.")
_EXPERIMENT = flags.DEFINE_enum("experiment", "all", ["all", *plotting_experiments.FIGURES],
                                "Which experiment's figures (all: every analysis stored in the folder).")
_OUT = flags.DEFINE_string("out", None, "Folder for the PNGs and PDFs (default: <workdir>/figures).")


def main():
    names = (training_experiments.stored_analyses(_WORKDIR.value) if _EXPERIMENT.value == "all"
             else [_EXPERIMENT.value])
    if not names:
        raise StoreError(f"no analysis in {_WORKDIR.value}/analysis: run experiments/analyze.py first")
    paths = [p for name in names for p in plotting_experiments.write_experiment_figures(name, _WORKDIR.value,
                                                                                          _OUT.value)]
    print("\n".join(str(p) for p in paths))


if __name__ == "__main__":
    cli.run_without_config(main)
