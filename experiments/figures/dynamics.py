"""Draws the training-dynamics figure (SPEC experiment 2) from a stored sweep and prints its dynamics block: per M,
t* three ways (closest approach to ridge, lowest T_true loss, ridge weight a falling through 1/2) with intervals and
whether M is transient, monotone or unresolved; the power laws t* ∝ M^α of each definition.

    python experiments/figures/dynamics.py --workdir=results/cpu_dynamics_fine
    # → results/cpu_dynamics_fine/figures/dynamics.{png,pdf}
"""

from absl import flags

from icl_regression import cli, dynamics, plotting

_WORKDIR = flags.DEFINE_string("workdir", "results/cpu_dynamics_fine",
                               "Sweep results folder (runs/, sweep_summary.json).")
_OUT = flags.DEFINE_string("out", None, "Folder for the PNG and PDF (default: <workdir>/figures).")
_SETTING = flags.DEFINE_string("setting", None, "For a sweep whose runs differ in more than M, budget and seed (D, "
                               "width, …): the setting to draw, as its label, e.g. 'D=2, K=8, noise_std=0.5' "
                               "(the table and the error list them).")


def main():
    summary, metrics_by_run = loaded = plotting.load_sweep(_WORKDIR.value, _SETTING.value)
    paths = plotting.write_dynamics_figure(_WORKDIR.value, _OUT.value, loaded, _SETTING.value)
    print(dynamics.format_dynamics(plotting.sweep_dynamics(summary, metrics_by_run)))
    print("\n".join(str(p) for p in paths))


if __name__ == "__main__":
    cli.run_without_config(main)
