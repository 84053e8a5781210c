"""Draws the Laplace-comparison figure of a stored sweep from its <workdir>/analysis/ JSON (written by
experiments/laplace_comparison.py): no training, no jax.

    python experiments/figures/laplace_comparison.py --workdir=results/cpu_laplace
"""

from absl import flags

from icl_regression import cli, estimator_plots

_WORKDIR = flags.DEFINE_string("workdir", "results/cpu_laplace", "Sweep results folder with analysis/.")
_OUT = flags.DEFINE_string("out", None, "Folder for the PNG and PDF (default: <workdir>/figures).")


def main():
    paths = estimator_plots.write_analysis_figure("laplace_comparison", _WORKDIR.value, _OUT.value)
    print("\n".join(str(p) for p in paths))


if __name__ == "__main__":
    cli.run_without_config(main)
