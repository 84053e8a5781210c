"""Draws the smoothed-dMMSE figure of a stored sweep from its <workdir>/analysis/ JSON (written by
experiments/smoothing.py): no training, no jax.

    python experiments/figures/smoothing.py --workdir=results/cpu_demo
"""

from absl import app, flags

from icl_regression import estimator_plots
from icl_regression.store import StoreError

_WORKDIR = flags.DEFINE_string("workdir", "results/cpu_demo", "Sweep results folder with analysis/.")
_OUT = flags.DEFINE_string("out", None, "Folder for the PNG and PDF (default: <workdir>/figures).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    try:
        paths = estimator_plots.write_analysis_figure("smoothing", _WORKDIR.value, _OUT.value)
    except StoreError as e:
        raise app.UsageError(str(e))
    print("\n".join(str(p) for p in paths))


if __name__ == "__main__":
    app.run(main)
