"""Figure functions and scripts on stored sweeps: a tiny sweep trained here, and the committed sweeps in results/."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from icl_regression import dynamics, estimator_plots, names, plotting, results
from icl_regression.store import StoreError

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted((REPO_ROOT / "experiments" / "figures").glob("*.py"))

def assert_png_and_pdf(paths, stem: str) -> None:
    by_suffix = {p.suffix: p for p in paths if p.stem == stem}
    assert set(by_suffix) == {".png", ".pdf"}, paths
    assert by_suffix[".png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert by_suffix[".pdf"].read_bytes()[:5] == b"%PDF-"
    assert all(p.stat().st_size > 1_000 for p in by_suffix.values())


@pytest.mark.parametrize("figure", sorted(plotting.FIGURE_WRITERS))
def test_each_figure_writes_png_and_pdf(sweep_dir, tmp_path, figure):
    paths = plotting.FIGURE_WRITERS[figure](sweep_dir, tmp_path)
    assert_png_and_pdf(paths, figure)


def _assert_same(recomputed, stored, path):
    """Same structure, keys and strings; numbers equal to 1e-9 relative (NaN equals NaN): the last digits of a
    recomputation move with the numpy version (2.4 and 2.5 differ in the 14th digit)."""
    assert type(recomputed) is type(stored) or {type(recomputed), type(stored)} <= {int, float}, path
    if isinstance(stored, dict):
        assert sorted(recomputed) == sorted(stored), path
        for key in stored:
            _assert_same(recomputed[key], stored[key], f"{path}/{key}")
    elif isinstance(stored, list):
        assert len(recomputed) == len(stored), path
        for i, (a, b) in enumerate(zip(recomputed, stored)):
            _assert_same(a, b, f"{path}[{i}]")
    elif isinstance(stored, float) or isinstance(recomputed, float):
        assert (math.isnan(recomputed) and math.isnan(stored)) or math.isclose(recomputed, stored, rel_tol=1e-9,
                                                                               abs_tol=1e-12), \
            f"{path}: recomputed {recomputed!r}, stored {stored!r}"
    else:
        assert recomputed == stored, f"{path}: recomputed {recomputed!r}, stored {stored!r}"


def test_dynamics_of_a_stored_sweep(sweep_dir):
    summary = results.load_summary(sweep_dir)
    dyn = plotting.sweep_dynamics(summary, results.run_metrics(sweep_dir))["dynamics"] \
        if "definitions" not in summary.get("dynamics", {}) else summary["dynamics"]
    assert len(dyn["per_run"]) == len(summary["cells"])
    for entry in dyn["per_run"] + dyn["per_num_tasks"]:
        assert entry["kind"] in (dynamics.TRANSIENT, dynamics.MONOTONE, dynamics.UNRESOLVED, dynamics.NO_DATA)
        assert entry["reason"]
        for t_star in entry["t_star"].values():
            if t_star["status"] == dynamics.LOCATED:
                assert 0 < t_star["value"] <= entry["steps"]
    for fits in dyn["power_law_by_budget"].values():
        assert set(dynamics.DEFINITIONS) <= set(fits)
    if "definitions" in summary.get("dynamics", {}):  # a summary written by today's code matches its runs
        recomputed = dynamics.summarize_dynamics(results.run_metrics(sweep_dir), summary["cells"],
                                                 **dynamics.analysis_settings(_sweep_config(sweep_dir)))
        _assert_same(recomputed["dynamics"], summary["dynamics"], "dynamics")
    assert "nan" not in dynamics.format_dynamics(dyn).lower()


def _sweep_config(sweep_dir):
    path = sweep_dir / names.SWEEP_CONFIG_FILE
    return json.loads(path.read_text()) if path.exists() else None


def test_per_position_figure_one_eval_set_and_unknown_m(tiny_sweep_dir, tmp_path):
    paths = plotting.write_per_position_figure(tiny_sweep_dir, tmp_path, ["2", "inf"], names.TRUE)
    assert_png_and_pdf(paths, "per_position")
    summary, metrics_by_run = plotting.load_sweep(tiny_sweep_dir)
    with pytest.raises(ValueError, match="available"):
        plotting.per_position_figure(metrics_by_run, summary["cells"], [3])


def test_all_script_regenerates_every_figure(sweep_dir, tmp_path):
    out = tmp_path / "figures"
    subprocess.run([sys.executable, "experiments/figures/all.py", f"--workdir={sweep_dir}", f"--out={out}"],
                   cwd=REPO_ROOT, check=True, capture_output=True, text=True, timeout=120)
    for stem in plotting.FIGURE_WRITERS:
        assert_png_and_pdf(list(out.iterdir()), stem)
    # ... and the figures of every analysis stored beside the sweep, drawn from their JSON.
    for name, (filename, _) in estimator_plots.ANALYSIS_FIGURES.items():
        if (sweep_dir / names.ANALYSIS_DIR / filename).exists():
            assert_png_and_pdf(list(out.iterdir()), name)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_on_a_missing_folder_names_it(script, tmp_path):
    missing = tmp_path / "no_such_sweep"
    proc = subprocess.run([sys.executable, str(script), f"--workdir={missing}"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert f"results folder {missing} does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("where", ["workdir", "runs", "a run", "analysis"])
def test_a_file_where_a_folder_belongs_is_one_line(tiny_sweep_dir, tmp_path, where):
    """The results folder, its runs/ or analysis/ replaced by a file: all.py names it on one line (not a
    NotADirectoryError traceback, nor analyses silently skipped); a run folder replaced by a file is a run that is
    not there (the sweep is re-summarised without it, saying so)."""
    import shutil

    workdir = tmp_path / "sweep"
    shutil.copytree(tiny_sweep_dir, workdir, ignore=shutil.ignore_patterns("checkpoints", ".jax_cache"))
    runs = workdir / names.RUNS_DIR
    target = {"workdir": workdir, "runs": runs, "a run": sorted(runs.iterdir())[0],
              "analysis": workdir / names.ANALYSIS_DIR}[where]
    shutil.rmtree(target, ignore_errors=True)
    target.write_text("not a folder\n")
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "experiments" / "figures" / "all.py"),
                           f"--workdir={workdir}", f"--out={tmp_path / 'figures'}"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
    if where == "a run":
        assert proc.returncode == 0 and "re-summarising" in proc.stdout, proc.stderr[-3000:]
        assert target.name not in {row["name"] for row in results.load_summary(workdir)["cells"]}
        return
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr[-3000:]
    assert f"{target} is not a folder (a regular file)" in proc.stderr
    if where == "analysis":  # reading one analysis says so too, rather than "no analysis/<name>.json: run …"
        from icl_regression import training_experiments

        for read in (lambda: training_experiments.read_analysis(workdir, "budgets"),
                     lambda: estimator_plots.load_analysis(workdir, names.INTERPOLATION_FILE)):
            with pytest.raises(StoreError, match=f"analysis folder {target} is not a folder"):
                read()


def test_a_stale_summary_in_a_folder_that_cannot_be_written_is_used_in_memory(tiny_sweep_dir, tmp_path,
                                                                            monkeypatch, capsys):
    """A read-only results folder (a copy fetched from elsewhere) whose runs changed since its summary: figures and
    the notebook still draw, from a summary computed in memory, with a line saying so; the file stays as it was."""
    import shutil

    workdir = tmp_path / "sweep"
    shutil.copytree(tiny_sweep_dir, workdir, ignore=shutil.ignore_patterns("checkpoints", ".jax_cache"))
    gone = sorted((workdir / names.RUNS_DIR).iterdir())[0]
    (gone / names.SUMMARY_FILE).unlink()
    stored = (workdir / names.SWEEP_SUMMARY_FILE).read_bytes()

    def read_only(path, obj):
        raise StoreError(f"cannot write {path}: read-only file system")
    monkeypatch.setattr(results, "write_json", read_only)
    summary, _ = plotting.load_sweep(workdir)
    lines = capsys.readouterr().out.splitlines()
    assert gone.name not in {row["name"] for row in summary["cells"]} and not summary["complete"]
    assert any("re-summarising" in line for line in lines)
    assert any("read-only file system: this summary is used in memory only" in line for line in lines), lines
    assert (workdir / names.SWEEP_SUMMARY_FILE).read_bytes() == stored
    assert summary == json.loads(json.dumps(results.compute_summary(workdir, [workdir / d for d in summary[
        "run_dirs"]]), sort_keys=True))


def test_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match=str(tmp_path)):
        plotting.write_all_figures(tmp_path)
    assert not (tmp_path / "figures").exists()


def test_same_results_give_the_same_figure_bytes(tiny_sweep_dir, tmp_path):
    """Regenerating committed figures must not change them unless the results changed (no dates in the PDF)."""
    first = plotting.write_sweep_figure(tiny_sweep_dir, tmp_path / "a")
    second = plotting.write_sweep_figure(tiny_sweep_dir, tmp_path / "b")
    for a, b in zip(first, second):
        assert a.read_bytes() == b.read_bytes(), a.name


def _transformer_styles(fig) -> dict:
    """{budget label: line styles} of the transformer's lines in every axes and legend of a figure."""
    styles = {}
    lines = [(line, line.get_label()) for ax in fig.axes for line in ax.get_lines()]
    lines += [(h, t.get_text()) for legend in fig.legends for h, t in zip(legend.legend_handles, legend.get_texts())]
    for line, label in lines:
        if label.startswith(names.LABELS[names.PT]) and "B=" in label and isinstance(line, plotting.plt.Line2D):
            styles.setdefault(label.split(", ", 1)[1], set()).add(line.get_linestyle())
    return styles


def test_line_style_means_the_budget_in_every_figure(tiny_sweep_dir):
    summary, metrics_by_run = plotting.load_sweep(tiny_sweep_dir)
    rows = summary["cells"]
    budgets = [plotting.budget_label(*b) for b in plotting._budgets_of(rows)]
    sweep_fig = plotting.sweep_figure(summary)
    per_position = plotting.per_position_figure(metrics_by_run, rows, [2, "inf"])
    for fig in (sweep_fig, per_position):
        styles = _transformer_styles(fig)
        assert styles.get(budgets[0]) == {"-"} and styles.get(budgets[1]) == {"--"}, styles
        for legend in fig.legends:
            assert legend.handlelength >= 3  # long enough to show a dash
            assert legend.axes is None  # a figure legend, off every axes (and its shaded interval)
    assert not any(ax.get_legend() for ax in sweep_fig.axes)
    plotting.plt.close("all")


def test_sweep_title_states_budgets_seeds_and_what_the_interval_covers(tiny_sweep_dir):
    summary, _ = plotting.load_sweep(tiny_sweep_dir)
    title = plotting.sweep_title(summary)
    assert "B=16, N=60 (solid)" in title and "B=32, N=60 (dashed)" in title and "1 seed per cell" in title
    if math.isfinite(summary["threshold_log2_num_tasks"]):
        assert "evaluation noise only" in title


def test_per_position_budget_flag(tiny_sweep_dir, tmp_path):
    proc = subprocess.run([sys.executable, "experiments/figures/per_position.py", f"--workdir={tiny_sweep_dir}",
                           f"--out={tmp_path}", "--budget=32,60"], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert_png_and_pdf(list(tmp_path.iterdir()), "per_position")
    summary, metrics_by_run = plotting.load_sweep(tiny_sweep_dir)
    fig = plotting.per_position_figure(metrics_by_run, summary["cells"], [2], budget="B=32,N=60")
    assert set(_transformer_styles(fig)) == {"B=32, N=60"}
    bad = subprocess.run([sys.executable, "experiments/figures/per_position.py", f"--workdir={tiny_sweep_dir}",
                          f"--out={tmp_path}", "--budget=48,60"], cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode != 0 and "not in the sweep; available: ['16,60', '32,60']" in bad.stderr
    assert "Traceback" not in bad.stderr
