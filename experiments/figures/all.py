"""Regenerates every figure of a stored sweep (sweep, dynamics, per-position) as PNG and PDF, in one command.

    python experiments/figures/all.py                                   # results/cpu_demo → results/cpu_demo/figures
    python experiments/figures/all.py --workdir=runs/my_sweep --out=/tmp/figures

When the runs changed since sweep_summary.json was written (its fingerprint no longer matches), the sweep is
re-summarised first, with a line saying so: the figures never draw a stale summary.
"""

from absl import flags

from icl_regression import cli, plotting, results

_WORKDIR = flags.DEFINE_string("workdir", "results/cpu_demo", "Sweep results folder (runs/, sweep_summary.json).")
_OUT = flags.DEFINE_string("out", None, "Folder for the PNGs and PDFs (default: <workdir>/figures).")


def main(overrides, stop):
    del stop
    if overrides:
        raise cli.UsageError("figures/all.py takes no --config.* overrides")
    results.refresh_summary(_WORKDIR.value)  # runs changed since the summary was written: re-summarise first
    paths = plotting.write_all_figures(_WORKDIR.value, _OUT.value)
    print("\n".join(str(p) for p in paths))


if __name__ == "__main__":
    cli.run(main, signals=False)
