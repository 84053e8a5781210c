"""Draws the smoothed-dMMSE figure of a stored sweep from its <workdir>/analysis/ JSON (written by
experiments/smoothing.py): no training, no jax.

    python experiments/figures/smoothing.py --workdir=results/cpu_reference
"""

from absl import flags

from icl_regression import cli, estimator_plots

_WORKDIR = flags.DEFINE_string("workdir", "results/cpu_reference", "Sweep results folder with analysis/.")
_OUT = flags.DEFINE_string("out", None, "Folder for the PNG and PDF (default: <workdir>/figures).")


def main():
    paths = estimator_plots.write_analysis_figure("smoothing", _WORKDIR.value, _OUT.value)
    print("\n".join(str(p) for p in paths))


if __name__ == "__main__":
    cli.run_without_config(main)
