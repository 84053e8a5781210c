"""Writes notebooks/explore_sweep.ipynb (outputs stripped). Run from the repository root:

    python notebooks/make_explore_sweep.py [output path]

Run the notebook headless (nbclient, installed by `pip install -e '.[test]'`, provides `jupyter execute`):

    jupyter execute notebooks/explore_sweep.ipynb
    ICL_SWEEP_DIR=runs/cpu_demo jupyter execute notebooks/explore_sweep.ipynb
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
        "(`icl_regression.results`, `.threshold`, `.dynamics`, `.plotting`); the same figures as files: "
        "`python experiments/figures/all.py --workdir=<sweep folder>`. Headless, from the repository root: "
        "`jupyter execute notebooks/explore_sweep.ipynb`."),
    new_code_cell(
        "import os\n"
        "from pathlib import Path\n\n"
        "\n"
        "def find_sweep(default: str = \"results/cpu_demo\") -> Path:\n"
        "    \"\"\"The sweep folder: $ICL_SWEEP_DIR, else `default`; a relative path is read from the repository root,\n"
        "    whether the kernel starts there (nbclient) or in notebooks/ (Jupyter opened on this file, jupyter execute).\"\"\"\n"
        "    wanted = Path(os.environ.get(\"ICL_SWEEP_DIR\") or default)\n"
        "    for root in (Path.cwd(), Path.cwd().parent):\n"
        "        if (root / wanted).is_dir():\n"
        "            return root / wanted\n"
        "    where = wanted if wanted.is_absolute() else f\"{wanted} under {Path.cwd()} or its parent\"\n"
        "    raise FileNotFoundError(f\"no folder {where}; set ICL_SWEEP_DIR to a sweep folder\")\n"
        "\n"
        "\n"
        "SWEEP_DIR = find_sweep()"),
    new_code_cell(
        "from icl_regression import dynamics, plotting, results, threshold\n\n"
        "%matplotlib inline\n\n"
        "summary, metrics_by_run = plotting.load_sweep(SWEEP_DIR)\n"
        "print(f\"{SWEEP_DIR}: {len(summary['cells'])} finished runs of {summary['num_cells']} cells\")\n"
        "settings = results.settings_of(summary)\n"
        "if settings:  # a sweep over D, width, depth, …: one setting at a time, never pooled\n"
        "    setting = os.environ.get(\"ICL_SWEEP_SETTING\") or settings[0]\n"
        "    print(f\"settings: {settings}; this notebook shows {setting!r} (ICL_SWEEP_SETTING chooses another)\")\n"
        "    summary = results.setting_summary(summary, setting)\n"
        "rows = summary[\"cells\"]"),
    new_markdown_cell("## Cells at the final evaluation (L/D against the noisy targets; mean ± sd over seeds)"),
    new_code_cell("print(results.format_table(rows))"),
    new_markdown_cell(
        "## The threshold M*\n\n"
        "*Crossing*: where the two budgets' Δ^{T_true}_{PT,Ridge} curves intersect (the paired difference, larger "
        "minus smaller budget, is zero). *Midpoint*: where the model is as far from ridge as from dMMSE on T_true "
        "(Δ_PT,Ridge = Δ_PT,dMMSE). Intervals resample seeds (t-calibrated) and evaluation sequences; with one seed "
        "they cover evaluation noise only. Every sign change is listed; the rule says which one is M*."),
    new_code_cell("print(results.format_threshold(summary))"),
    new_markdown_cell(
        "### Where the replicates put M*\n\n"
        "The curve M* was read from (the first budget pair's crossing, or the smallest budget's midpoint: "
        "`summary['method']`). Each replicate perturbs its seed-mean curve by a seed part and an evaluation part and "
        "applies the same rule; the interval is the central 95% of these (`threshold.replicate_estimates`: the "
        "summary's own replicates). Replicates beyond the grid are counted apart."),
    new_code_cell(
        "import numpy as np\n"
        "import matplotlib.pyplot as plt\n\n"
        "if summary[\"method\"] in (\"crossing\", \"midpoint\"):\n"
        "    curve = threshold.threshold_curve(rows, summary[\"method\"])\n"
        "    samples = threshold.replicate_estimates(curve)\n"
        "    inside = samples[np.isfinite(samples)]\n"
        "    print(f\"M* read from the {summary['method']} curve; interval over {threshold.interval_source(curve.num_seeds)}\")\n"
        "    print(f\"{len(inside)} of {len(samples)} replicates inside the grid, {np.sum(samples == -np.inf)} below it, \"\n"
        "          f\"{np.sum(samples == np.inf)} above it\")\n"
        "    fig, ax = plt.subplots(figsize=(5, 2.5))\n"
        "    ax.hist(inside, bins=40, color=\"0.5\")\n"
        "    ax.set_xlabel(\"log2 M* of a replicate\")\n"
        "    ax.set_ylabel(\"replicates\")\n"
        "    ax.set_title(f\"{summary['method']}: {threshold.interval_source(curve.num_seeds)}\", fontsize=9)\n"
        "else:\n"
        "    print(f\"no curve to read M* from: {summary['threshold_reason']}\")"),
    new_markdown_cell("## The diversity sweep"),
    new_code_cell("fig = plotting.sweep_figure(summary)"),
    new_markdown_cell("## Error against context position (final evaluation; every budget in its line style)"),
    new_code_cell(
        "lengths = plotting.context_lengths({r[\"name\"]: metrics_by_run[r[\"name\"]] for r in rows})\n"
        "if len(lengths) > 1:\n"
        "    print(f\"no common context axis: these runs have K = {sorted(lengths)}\")\n"
        "else:  # the M every budget has, or e.g. num_tasks_values=[2, 8, \"inf\"], budget=\"128,2500\" for one budget\n"
        "    fig = plotting.sweep_per_position_figure(summary, metrics_by_run)"),
    new_markdown_cell(
        "## Training dynamics: t* three ways and the power laws t* ∝ M^α\n\n"
        "Transient runs approach ridge and then turn away (towards dMMSE). t* is read three ways: (a) the closest "
        "approach to ridge, (b) the lowest loss on new tasks, (c) the step where the model's ridge weight a "
        "(PT ≈ a·ridge + (1 − a)·dMMSE) falls through 1/2; each with a bootstrap interval over seeds and evaluation "
        "sequences, and one power law per definition over the transient M (or `sweep.analysis.fit_num_tasks`): the "
        "summary's own dynamics block, as `experiments/sweep.py` printed it."),
    new_code_cell(
        "dyn = plotting.sweep_dynamics(summary, metrics_by_run)\n"
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
