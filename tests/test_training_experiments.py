"""The training-side experiments end to end: their configs (CPU and paper variants), the analysis script on a stored
sweep, and every figure drawn from stored analyses."""

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import pytest

from icl_regression import axes, plotting_experiments, sweep, training_experiments
from test_axes import synthetic_rows
from test_figures import assert_png_and_pdf

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "experiments" / "configs"
EXPERIMENT_CONFIGS = {"budgets": ("cpu", "paper"), "long_dynamics": ("cpu", "paper"), "dimension": ("cpu", "paper"),
                      "capacity": ("cpu_weight_decay", "cpu_capacity", "cpu", "paper"), "landscape": ("cpu", "paper")}


def load_config(name: str, variant: str) -> dict:
    spec = importlib.util.spec_from_file_location(name, CONFIGS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(variant).to_dict()


@pytest.mark.parametrize("name, variant", [(n, v) for n, vs in EXPERIMENT_CONFIGS.items() for v in vs])
def test_every_variant_prints_its_plan_and_cost(name, variant, tmp_path):
    lines = []
    assert sweep.run_sweep(load_config(name, variant), tmp_path / "sweep", dry_run=True, print_fn=lines.append) is False
    assert "model-steps" in lines[0] and "TFLOP" in lines[0]
    assert not (tmp_path / "sweep").exists()


def test_cpu_variants_have_the_documented_grids(tmp_path):
    budgets = sweep.expand(load_config("budgets", "cpu"), tmp_path)
    assert {(c.config.train.batch_size, c.config.train.steps) for c in budgets} == {
        (64, 2500), (128, 2500), (64, 10000)}
    assert len(budgets) == 7 * 3 * 2 + 5 * 3
    dims = sweep.expand(load_config("dimension", "cpu"), tmp_path)
    for cell in dims:  # K = 4D and D/σ² = 8 (σ² = 0.25 at D = 2), M a multiple of D
        data = cell.config.data
        assert data.context_len == 4 * data.dim and data.dim / data.noise_std**2 == pytest.approx(8.0)
        assert data.num_tasks % data.dim == 0
    paper_dims = sweep.expand(load_config("dimension", "paper"), tmp_path)
    for cell in paper_dims:  # the paper's recipe: K = 2D, σ² = 0.25·D/8, the large model
        data, model = cell.config.data, cell.config.model
        assert data.context_len == 2 * data.dim and data.noise_std**2 == pytest.approx(0.25 * data.dim / 8)
        assert (model.num_layers, model.d_model, model.num_heads) == (12, 256, 4)
    stages = [{c.name for c in sweep.expand(load_config("capacity", v), tmp_path)}
              for v in ("cpu_weight_decay", "cpu_capacity", "cpu")]
    assert stages[0] < stages[1] < stages[2]  # cumulative stages into one folder
    capacity = sweep.expand(load_config("capacity", "cpu"), tmp_path)
    settings = {(c.config.train.weight_decay, c.config.model.d_model, c.config.model.num_layers) for c in capacity}
    assert {wd for wd, _, _ in settings} == {0.0, 0.01, 0.1, 1.0}
    assert {(d, l) for _, d, l in settings} == {(16, 2), (32, 2), (64, 2), (32, 1), (32, 4)}
    long = sweep.expand(load_config("long_dynamics", "paper"), tmp_path)
    assert {(c.config.train.batch_size, c.config.train.steps) for c in long} == {(512, 2_000_000)}


def test_cpu_baselines_are_the_budgets_cells(tmp_path):
    """The documented reuse: cells shared between experiments have the same run names, so copies are skipped."""
    budgets = {c.name for c in sweep.expand(load_config("budgets", "cpu"), tmp_path)}
    for name in ("dimension", "capacity", "long_dynamics"):
        cells = {c.name for c in sweep.expand(load_config(name, "cpu"), tmp_path)}
        assert cells & budgets, name


def _analyses():
    small, wide, long = (64, 1000), (128, 1000), (64, 2000)
    budgets_rows = synthetic_rows(6.0, crossings={(small, wide): 5.0, (small, long): 7.0}, budgets=(small, wide, long))
    dim_rows = [r for d in (1, 2, 4) for r in synthetic_rows(math.log2(3 * d), axis_values={axes.DIM: d})]
    cap_rows = [r for wd, d, l in ((0.0, 32, 2), (0.1, 32, 2), (0.0, 16, 2), (0.0, 32, 4), (0.1, 32, 4))
                for r in synthetic_rows(6.0 - 10 * wd, axis_values={axes.WEIGHT_DECAY: wd, axes.WIDTH: d,
                                                                    axes.DEPTH: l})]
    return {"budgets": training_experiments.budgets_analysis(budgets_rows, num_replicates=10),
            "dimension": training_experiments.dimension_analysis(dim_rows, num_replicates=10),
            "capacity": training_experiments.capacity_analysis(cap_rows, num_replicates=10),
            "above_threshold": training_experiments.above_threshold_analysis(budgets_rows, num_replicates=10)}


def test_every_experiment_figure_draws_from_its_stored_analysis(tmp_path):
    expected = {"budgets": ["budgets", "long_dynamics"], "dimension": ["dimension"],
                "capacity": ["capacity_weight_decay", "capacity_d_model", "capacity_num_layers"],
                "above_threshold": ["above_threshold"]}
    for name, analysis in _analyses().items():
        training_experiments.write_analysis(tmp_path, name, analysis)
        paths = plotting_experiments.write_experiment_figures(name, tmp_path)
        for stem in expected[name]:
            assert_png_and_pdf(paths, stem)
    out = tmp_path / "redrawn"
    proc = subprocess.run([sys.executable, "experiments/figures/training_experiments.py", f"--workdir={tmp_path}",
                           f"--out={out}"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(list(out.glob("*.png"))) == sum(len(v) for v in expected.values())


def test_analyze_script_on_a_stored_sweep(tiny_sweep_dir, tmp_path):
    proc = subprocess.run([sys.executable, "experiments/analyze.py", "--experiment=budgets",
                           f"--workdir={tiny_sweep_dir}", "--num_replicates=10"], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "batch B=16_N=60_vs_B=32_N=60" in proc.stdout and "figures:" in proc.stdout
    stored = training_experiments.read_analysis(tiny_sweep_dir, "budgets")
    assert [c["kind"] for c in stored["crossings"]] == ["batch"] and len(stored["midpoints"]) == 2
    assert stored["t_star"] and {"num_tasks", "t_star_median"} <= set(stored["t_star"][0])


@pytest.mark.parametrize("name", ["capacity", "dimension"])
def test_an_axis_analysis_of_runs_that_do_not_vary_its_axes_is_refused(tiny_sweep_dir, name):
    """The tiny sweep has one model size and one D: before, capacity.json was written with no series."""
    with pytest.raises(ValueError, match=rf"the {name} analysis compares runs that differ in one of .*; the finished "
                                         r"runs under .* have 1 setting\(s\): "):
        training_experiments.run_analysis(name, tiny_sweep_dir)
    assert not training_experiments.analysis_path(tiny_sweep_dir, name).exists()


def test_analyze_script_names_a_missing_folder(tmp_path):
    proc = subprocess.run([sys.executable, "experiments/analyze.py", "--experiment=dimension",
                           f"--workdir={tmp_path / 'nowhere'}"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr


COMMITTED = {"cpu_budgets": ("budgets", ["budgets", "above_threshold", "landscape"]),
             "cpu_dimension": ("dimension", ["dimension"]), "cpu_capacity": ("capacity", ["capacity"])}


@pytest.mark.parametrize("folder", sorted(COMMITTED))
def test_committed_results_match_their_configs_and_redraw(folder, tmp_path):
    """Every run folder of a committed experiment is a cell of its stored sweep config (no orphans, nothing missing),
    and its figures redraw from the stored analyses alone."""
    workdir = REPO / "results" / folder
    if not (workdir / "sweep_config.json").exists():
        pytest.skip(f"no committed results in {workdir}")
    import json
    stored = json.loads((workdir / "sweep_config.json").read_text())
    assert {c.name for c in sweep.expand(stored, workdir)} == {p.name for p in (workdir / "runs").iterdir()}
    for name in COMMITTED[folder][1]:
        if training_experiments.analysis_path(workdir, name).exists():
            paths = plotting_experiments.write_experiment_figures(name, workdir, tmp_path)
            assert paths and all(p.stat().st_size > 1000 for p in paths)


def test_paper_seeds_variant_extends_the_paper_sweep(tmp_path):
    """`paper_small.py:seeds` is the default grid plus seeds 1 and 2 near the crossing: run with --extend in the
    same folder, its stored config (and so its summary) keeps the seed-0 cells."""
    default = {c.name for c in sweep.expand(load_config("paper_small", ""), tmp_path)}
    seeds = sweep.expand(load_config("paper_small", "seeds"), tmp_path)
    assert default < {c.name for c in seeds} and len(seeds) == len(default) + 20
    added = [c for c in seeds if c.name not in default]
    assert {c.config.train.seed for c in added} == {1, 2} and {c.config.train.batch_size for c in added} == {256, 512}
    assert all(c.config.data.nested_pools is False and c.config.train.steps == 500_000 for c in seeds)


def test_steps_ladder_reports_disjoint_intervals_as_not_overlapping():
    """M* at N and at 4N with disjoint intervals is a shift; the ladder must say the intervals do not overlap."""
    budgets = [(16, 100), (16, 200), (16, 400)]
    mids = {axes.budget_label((16, 100)): {"log2_num_tasks": 3.0, "interval": [2.5, 3.5]},
            axes.budget_label((16, 200)): {"log2_num_tasks": 4.0, "interval": [3.2, 4.5]},
            axes.budget_label((16, 400)): {"log2_num_tasks": 5.0, "interval": [4.5, 5.5]}}
    [ladder] = training_experiments.steps_ladder(mids, budgets)
    assert ladder["intervals_overlap"] is False and ladder["shift_log2"] == 2.0
    mids[axes.budget_label((16, 400))]["interval"] = [3.4, 5.5]
    assert training_experiments.steps_ladder(mids, budgets)[0]["intervals_overlap"] is True


def test_t_star_table_counts_both_kinds_of_censored_seeds(monkeypatch, tmp_path):
    """Seeds whose t* lies at or past the end (+inf) and at or before the first evaluation (0) are both
    censored; a located one is not."""
    from icl_regression import dynamics

    per_run = [{"name": f"r{i}", "kind": dynamics.MONOTONE, "t_star": {dynamics.RIDGE: {"value": v, "status": st}}}
               for i, (v, st) in enumerate([(500.0, dynamics.LOCATED), (1000.0, dynamics.AT_END),
                                            (20.0, dynamics.AT_START)])]
    dyn = {"dynamics": {"per_run": per_run, "per_num_tasks": [{
        "num_tasks": 4, "batch_size": 16, "steps": 1000, "num_seeds": 3, "kind": dynamics.MONOTONE,
        "runs": ["r0", "r1", "r2"],
        "t_star": {dynamics.RIDGE: {"value": 500.0, "interval": [0.0, 1e9], "status": dynamics.LOCATED}}}]}}
    monkeypatch.setattr(training_experiments.results, "run_metrics", lambda workdir: {})
    monkeypatch.setattr(training_experiments.dynamics, "summarize_dynamics", lambda metrics, rows: dyn)
    [row] = training_experiments.t_star_table(tmp_path, [])
    assert row["t_star_seeds"] == [500.0, float("inf"), 0.0]
    assert row["t_star_censored"] == 2 and row["t_star_median"] == 500.0
