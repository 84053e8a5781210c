"""Writes notebooks/explore_sweep.ipynb (outputs stripped). Run from the repository root:

    python notebooks/make_explore_sweep.py [output path]
"""

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CELLS = [
    new_markdown_cell(
        "# Explore a diversity sweep\n\n"
        "Reads one sweep from the results store (`runs/<run>/metrics.jsonl`, `sweep_summary.json`) and shows its "
        "table, threshold, figures and training dynamics. Every number and figure comes from library functions "
        "(`icl_regression.results`, `.dynamics`, `.plotting`); the same figures as files: "
        "`python experiments/figures/all.py --workdir=<sweep folder>`."),
    new_code_cell(
        "import os\n"
        "from pathlib import Path\n\n"
        "# The sweep folder; override with the environment variable ICL_SWEEP_DIR.\n"
        "SWEEP_DIR = Path(os.environ.get(\"ICL_SWEEP_DIR\", \"../results/cpu_demo\"))"),
    new_code_cell(
        "from icl_regression import dynamics, plotting, results\n\n"
        "%matplotlib inline\n\n"
        "summary, metrics_by_run = plotting.load_sweep(SWEEP_DIR)\n"
        "rows = summary[\"cells\"]\n"
        "print(f\"{SWEEP_DIR}: {len(rows)} finished runs of {summary['num_cells']} cells\")"),
    new_markdown_cell("## Cells at the final evaluation (L/D against the noisy targets; means over seeds)"),
    new_code_cell("print(results.format_table(rows))"),
    new_markdown_cell("## The threshold M* (crossing of two data budgets, and the midpoint of each budget)"),
    new_code_cell("print(results.format_threshold(summary))"),
    new_markdown_cell("## The diversity sweep"),
    new_code_cell("fig = plotting.sweep_figure(summary)"),
    new_markdown_cell("## Error against context position (final evaluation, largest budget)"),
    new_code_cell(
        "num_tasks_values = plotting.default_per_position_num_tasks(rows)  # or e.g. [2, 16, \"inf\"]\n"
        "fig = plotting.per_position_figure(metrics_by_run, rows, num_tasks_values)"),
    new_markdown_cell(
        "## Training dynamics: closest approach to ridge t* and the power law t* ∝ M^α\n\n"
        "Transient runs approach ridge and then turn away (towards dMMSE); the fit uses the transient finite M."),
    new_code_cell(
        "dyn = dynamics.summarize_dynamics(metrics_by_run, rows)\n"
        "print(dynamics.format_dynamics(dyn))"),
    new_code_cell("fig = plotting.dynamics_figure(metrics_by_run, rows, dyn)"),
]


def build() -> nbformat.NotebookNode:
    nb = new_notebook(cells=CELLS)
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i:02d}"  # stable ids: regenerating gives the same file
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "explore_sweep.ipynb"
    nb = build()
    nbformat.validate(nb)
    nbformat.write(nb, path)
    print(path)
