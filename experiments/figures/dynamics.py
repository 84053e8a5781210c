"""Draws the training-dynamics figure (SPEC experiment 2) from a stored sweep: Δ^{T_true}_{PT,Ridge} against step
per M and budget with t* (closest approach to ridge) marked, and t* against M with the power law t* ∝ M^α.
Prints t* per M and the fit.

    python experiments/figures/dynamics.py --workdir=results/cpu_demo   # → results/cpu_demo/figures/dynamics.{png,pdf}
"""

from absl import app, flags

from icl_regression import dynamics, plotting
from icl_regression.store import StoreError

_WORKDIR = flags.DEFINE_string("workdir", "results/cpu_demo", "Sweep results folder (runs/, sweep_summary.json).")
_OUT = flags.DEFINE_string("out", None, "Folder for the PNG and PDF (default: <workdir>/figures).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    try:
        summary, metrics_by_run = loaded = plotting.load_sweep(_WORKDIR.value)
        paths = plotting.write_dynamics_figure(_WORKDIR.value, _OUT.value, loaded)
    except StoreError as e:
        raise app.UsageError(str(e))
    print(dynamics.format_dynamics(dynamics.summarize_dynamics(metrics_by_run, summary["cells"])))
    print("\n".join(str(p) for p in paths))


if __name__ == "__main__":
    app.run(main)
