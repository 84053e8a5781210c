"""Analyses a stored training-side experiment (no training, no jax), prints its table, writes
`<workdir>/analysis/<experiment>.json` and its figures (PNG, PDF) into `<workdir>/figures`.

    python experiments/analyze.py --experiment=budgets --workdir=results/cpu_budgets          # Figs. 3, 4
    python experiments/analyze.py --experiment=above_threshold --workdir=results/cpu_budgets  # Fig. 10
    python experiments/analyze.py --experiment=dimension --workdir=results/cpu_dimension      # Fig. 6
    python experiments/analyze.py --experiment=capacity --workdir=results/cpu_capacity        # Figs. 7, 13

The loss landscape (Fig. 11) needs the models' weights: `experiments/landscape.py`.
"""

from absl import flags

from icl_regression import cli, plotting_experiments, training_experiments

_EXPERIMENT = flags.DEFINE_enum("experiment", None, list(training_experiments.ANALYSES), "Which analysis.",
                                required=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Sweep results folder (runs/).", required=True)
_NUM_REPLICATES = flags.DEFINE_integer("num_replicates", None, "Bootstrap replicates per threshold (default: as "
                                       "many as the runs stored, at least 200).")
_FIGURE = flags.DEFINE_bool("figure", True, "Also draw the experiment's figures into <workdir>/figures.")


def main():
    cli.at_least(_NUM_REPLICATES, 2)
    try:
        analysis = training_experiments.run_analysis(_EXPERIMENT.value, _WORKDIR.value, _NUM_REPLICATES.value)
    except ValueError as e:  # StoreError and ConfigError: reported by cli.run
        raise cli.UsageError(str(e))
    print(training_experiments.format_analysis(_EXPERIMENT.value, analysis))
    print(f"analysis: {training_experiments.analysis_path(_WORKDIR.value, _EXPERIMENT.value)}")
    if _FIGURE.value:
        paths = plotting_experiments.write_experiment_figures(_EXPERIMENT.value, _WORKDIR.value)
        print("figures: " + ", ".join(str(p) for p in paths if p.suffix == ".png"))


if __name__ == "__main__":
    cli.run_without_config(main)
