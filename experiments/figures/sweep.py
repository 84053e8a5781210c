"""Draws the diversity-sweep figure (SPEC experiment 1) from a stored sweep: L/D, Δ_{PT,dMMSE} and Δ_{PT,Ridge}
against M on both evaluation distributions, per data budget, with the threshold and its interval marked.

    python experiments/figures/sweep.py --workdir=results/cpu_demo      # → results/cpu_demo/figures/sweep.{png,pdf}
"""

from absl import flags

from icl_regression import cli, plotting

_WORKDIR = flags.DEFINE_string("workdir", "results/cpu_demo", "Sweep results folder (runs/, sweep_summary.json).")
_OUT = flags.DEFINE_string("out", None, "Folder for the PNG and PDF (default: <workdir>/figures).")
_SETTING = flags.DEFINE_string("setting", None, "For a sweep whose runs differ in more than M, budget and seed (D, "
                               "width, …): the setting to draw, as its label, e.g. 'D=2, K=8, noise_std=0.5' "
                               "(the table and the error list them).")


def main():
    paths = plotting.write_sweep_figure(_WORKDIR.value, _OUT.value, _SETTING.value)
    print("\n".join(str(p) for p in paths))


if __name__ == "__main__":
    cli.run_without_config(main)
