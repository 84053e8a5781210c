"""Regenerates every figure of a stored sweep (sweep, dynamics, per-position) as PNG and PDF, in one command.

    python experiments/figures/all.py                                   # results/cpu_demo → results/cpu_demo/figures
    python experiments/figures/all.py --workdir=runs/my_sweep --out=/tmp/figures
"""

from absl import app, flags

from icl_regression import plotting
from icl_regression.store import StoreError

_WORKDIR = flags.DEFINE_string("workdir", "results/cpu_demo", "Sweep results folder (runs/, sweep_summary.json).")
_OUT = flags.DEFINE_string("out", None, "Folder for the PNGs and PDFs (default: <workdir>/figures).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    try:
        paths = plotting.write_all_figures(_WORKDIR.value, _OUT.value)
    except StoreError as e:
        raise app.UsageError(str(e))
    print("\n".join(str(p) for p in paths))


if __name__ == "__main__":
    app.run(main)
