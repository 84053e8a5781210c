"""The estimator analyses (interpolated tasks, smoothed dMMSE, the Laplace comparison) on tiny stored sweeps: their
results, parameters from checkpoints or from verified retraining, their figures and scripts."""

import copy
import json
import shutil
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import REPO_ROOT, TINY_SWEEP
from test_figures import assert_png_and_pdf

from icl_regression import (estimator_plots, interpolation, laplace_comparison, names, results, rng, smoothing,
                            sweep, trained)
from icl_regression.store import StoreError

FAST_INTERPOLATION = interpolation.InterpolationOptions(num_pairs=6, num_alphas=5, sequences_per_pair=4)
FAST_SMOOTHING = smoothing.SmoothingOptions(grid_points=5, refinements=1, search_sequences=64)


def _copy(sweep_dir, destination, checkpoints=True):
    """A copy of a stored sweep (without its checkpoints: as a committed sweep is) that a test may write into."""
    ignore = shutil.ignore_patterns(names.ANALYSIS_DIR, *(() if checkpoints else (names.CHECKPOINT_DIR,)))
    shutil.copytree(sweep_dir, destination, ignore=ignore)
    return destination


@pytest.fixture(scope="module")
def retrained(tiny_sweep_dir, tmp_path_factory):
    """The tiny sweep without checkpoints, its interpolation computed from runs retrained into a scratch folder,
    and the same analysis from the original checkpoints: (copy, scratch, retrained result, checkpoint result)."""
    root = tmp_path_factory.mktemp("retrained")
    bare = _copy(tiny_sweep_dir, root / "sweep", checkpoints=False)
    from_retraining = interpolation.run_interpolation(bare, root / "scratch", ["2", "8"], [32], FAST_INTERPOLATION,
                                                      print_fn=lambda *a: None)
    from_checkpoints = interpolation.run_interpolation(tiny_sweep_dir, None, ["2", "8"], [32], FAST_INTERPOLATION,
                                                       out=root / "from_checkpoints.json", print_fn=lambda *a: None)
    return bare, root / "scratch", from_retraining, from_checkpoints


def test_interpolated_path_keeps_the_mean_norm_and_ends_at_the_pool_tasks():
    w_i, w_j = jnp.array([[3.0, 0.0], [1.0, 1.0]]), jnp.array([[0.0, 1.0], [-2.0, 0.5]])
    path = np.asarray(interpolation.interpolated_tasks(w_i, w_j, jnp.linspace(0, 1, 5)))
    mean_norm = 0.5 * (np.linalg.norm(w_i, axis=1) + np.linalg.norm(w_j, axis=1))
    np.testing.assert_allclose(np.linalg.norm(path, axis=-1), np.repeat(mean_norm[:, None], 5, 1), rtol=1e-6)
    np.testing.assert_allclose(path[:, -1] / mean_norm[:, None], w_i / np.linalg.norm(w_i, axis=1)[:, None],
                               rtol=1e-6)  # α = 1: w_i's direction
    np.testing.assert_allclose(path[:, 0] / mean_norm[:, None], w_j / np.linalg.norm(w_j, axis=1)[:, None],
                               rtol=1e-6)
    key = rng.stream_key(0, rng.Stream.EVAL_TASKS, interpolation.ANALYSIS_INDEX)
    first, second = (np.asarray(a) for a in interpolation.draw_pairs(key, 3, 500))
    assert np.all(first != second) and first.max() < 3 and second.max() < 3 and len(set(zip(first, second))) == 6


def test_interpolation_from_retrained_runs_equals_the_one_from_checkpoints(retrained):
    _, scratch, from_retraining, from_checkpoints = retrained
    assert [r["params"] for r in from_retraining["runs"]] == ["retrained", "retrained"]
    assert all(r["retrained_max_relative_deviation"] == 0.0 for r in from_retraining["runs"])  # bit-identical
    assert [r["params"] for r in from_checkpoints["runs"]] == ["checkpoint", "checkpoint"]
    for a, b in zip(from_retraining["runs"], from_checkpoints["runs"]):
        assert a["name"] == b["name"] and a["loss"] == b["loss"]  # bit-identical parameters, identical numbers
        assert len(a["alphas"]) == 5 and a["alphas"][0] == 0.0 and a["alphas"][-1] == 1.0
        for curve in a["loss"].values():
            assert len(curve["mean"]) == 5 and np.all(np.isfinite(curve["mean"]))
            assert np.shape(curve["per_position"]) == (5, TINY_SWEEP["data"]["context_len"])
    # Only the compiled group of the requested runs (batch 32) was retrained: 3 cells, M = 2, 8, ∞.
    assert sorted(p.name.split("_")[0] for p in (scratch / names.RUNS_DIR).iterdir()) == ["M=2", "M=8", "M=inf"]


def test_a_retrained_run_that_does_not_reproduce_its_metrics_is_refused(retrained, tmp_path):
    bare, scratch, _, _ = retrained
    tampered = _copy(bare, tmp_path / "tampered")
    run_dir = next(p for p in (tampered / names.RUNS_DIR).iterdir() if p.name.startswith("M=2_B=32"))
    records = [json.loads(line) for line in (run_dir / names.METRICS_FILE).read_text().splitlines()]
    records[-1]["mean"][names.loss_key(names.TRUE, names.PT)] *= 1.0001
    (run_dir / names.METRICS_FILE).write_text("".join(json.dumps(r) + "\n" for r in records))
    cells = trained.select_cells(trained.sweep_cells(tampered), ["2"], [32])
    with pytest.raises(trained.ParamsError, match="does not reproduce the stored metrics"):
        trained.load_trained(tampered, cells, scratch, print_fn=lambda *a: None)  # scratch: already retrained
    runs = trained.load_trained(tampered, cells, scratch, rtol=1e-3, print_fn=lambda *a: None)  # knowingly
    assert runs[0].source == "retrained" and 0 < runs[0].deviation <= 1e-3
    assert runs[0].describe()["retrained_max_relative_deviation"] == runs[0].deviation


@pytest.mark.parametrize("key, accepted", [(trained.TRAIN_LOSS, True), ("eval", False)], ids=["train_loss", "eval"])
def test_the_training_loss_may_differ_by_float32_rounding_an_evaluation_may_not(retrained, tmp_path, key, accepted):
    """A run stopped and resumed averages its training loss over other compiled calls (last float32 digits move);
    its evaluations depend on the parameters alone. A 2e-7 change is accepted in the first, refused in the second."""
    bare, scratch, _, _ = retrained
    changed = _copy(bare, tmp_path / "changed")
    run_dir = next(p for p in (changed / names.RUNS_DIR).iterdir() if p.name.startswith("M=2_B=32"))
    records = [json.loads(line) for line in (run_dir / names.METRICS_FILE).read_text().splitlines()]
    if key == trained.TRAIN_LOSS:
        records[1][trained.TRAIN_LOSS] *= 1 + 2e-7
    else:
        records[1]["mean"][names.loss_key(names.TRUE, names.PT)] *= 1 + 2e-7
    (run_dir / names.METRICS_FILE).write_text("".join(json.dumps(r) + "\n" for r in records))
    cells = trained.select_cells(trained.sweep_cells(changed), ["2"], [32])
    if accepted:
        runs = trained.load_trained(changed, cells, scratch, print_fn=lambda *a: None)
        assert runs[0].source == "retrained" and runs[0].deviation == 0.0
    else:
        with pytest.raises(trained.ParamsError, match="does not reproduce the stored metrics"):
            trained.load_trained(changed, cells, scratch, print_fn=lambda *a: None)


def test_missing_checkpoints_without_a_scratch_folder_say_what_to_run(retrained):
    bare = retrained[0]
    with pytest.raises(trained.ParamsError, match="--scratch"):
        trained.load_trained(bare, trained.select_cells(trained.sweep_cells(bare), ["8"], [16]), None)
    proc = subprocess.run([sys.executable, "experiments/interpolation.py", f"--workdir={bare}", "--noretrain"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr[-2000:]
    assert "retraining is off (--retrain=false): --retrain=true (with --scratch" in proc.stderr  # not "pass --scratch"


@pytest.mark.parametrize("rtol", [-1.0, float("nan"), float("inf")])
def test_a_bad_retraining_tolerance_is_refused_before_retraining(tiny_sweep_dir, tmp_path, rtol):
    cells = trained.select_cells(trained.sweep_cells(tiny_sweep_dir), ["2"], [16])
    with pytest.raises(ValueError, match=rf"--retrain_rtol={rtol}; allowed: a finite float >= 0"):
        trained.load_trained(tiny_sweep_dir, cells, tmp_path / "scratch", rtol, print_fn=lambda *a: None)
    assert not (tmp_path / "scratch").exists()


def test_unknown_runs_are_named(tiny_sweep_dir):
    with pytest.raises(ValueError, match=r"finished \(M, batch\)"):
        trained.select_cells(trained.sweep_cells(tiny_sweep_dir), ["3"], None)
    with pytest.raises(ValueError, match=r"takes finite M only; finished \(M, batch\): \[\('2', 16\), \('2', 32\), "
                                         r"\('8', 16\), \('8', 32\)\]$"):  # M = ∞ is not offered
        trained.select_cells(trained.sweep_cells(tiny_sweep_dir), ["inf"], None, finite_only=True)


@pytest.mark.parametrize("options, said", [({"search_sequences": -5}, r"search_sequences=-5; allowed: an integer >= 0"),
                                           ({"grid_max": float("inf")}, r"grid_max=inf; allowed: .*both finite"),
                                           ({"grid_min": float("nan")}, r"grid_min=nan, .*both finite")])
def test_bad_smoothing_options_are_named(options, said):
    with pytest.raises(ValueError, match=said):
        smoothing.SmoothingOptions(**options)


def test_smoothing_finds_the_best_smoothing_and_compares_the_model(tiny_sweep_dir, tmp_path):
    out = tmp_path / "smoothing.json"
    result = smoothing.run_smoothing(tiny_sweep_dir, options=FAST_SMOOTHING, out=out, print_fn=lambda *a: None)
    assert json.loads(out.read_text())["pools"] == json.loads(json.dumps(result["pools"]))
    assert sorted(p["num_tasks"] for p in result["pools"]) == [2, 8]  # one per pool: budgets share it
    assert len(result["runs"]) == 4  # finite M at two budgets
    for pool in result["pools"]:
        curve = dict(zip(pool["search_curve"]["smoothing_std"], pool["search_curve"]["loss_true_search"]))
        assert 0.0 in curve and curve[pool["best_smoothing_std"]] == min(curve.values())
        assert len(curve) > FAST_SMOOTHING.grid_points + 1  # the refinement added points
        for eval_set in names.EVAL_SETS:
            assert set(pool[eval_set]) == {names.SMOOTHED_DMMSE, names.DMMSE, names.RIDGE}
    # The stored losses of dMMSE and ridge were recomputed on rebuilt sets (else run_smoothing raises), and the
    # model's numbers are its stored final metrics.
    summary = {r["name"]: r for r in json.loads((tiny_sweep_dir / names.SWEEP_SUMMARY_FILE).read_text())["cells"]}
    for run in result["runs"]:
        assert run[names.PT][names.TRUE]["mean"] == pytest.approx(
            summary[run["name"]]["final"][names.loss_key(names.TRUE, names.PT)], rel=1e-6)


@pytest.fixture(scope="module")
def tiny_laplace_sweep(tmp_path_factory):
    """Two cells (M = 2 and ∞, batch 16) of the tiny sweep, trained on Laplace tasks."""
    config = copy.deepcopy(TINY_SWEEP)
    config["data"]["task_prior"] = "laplace"
    config["sweep"]["grid"] = {"data": {"num_tasks": (2, "inf")}, "train": {"batch_size": (16,)}}
    workdir = tmp_path_factory.mktemp("laplace") / "sweep"
    assert sweep.run_sweep(config, workdir, print_fn=lambda *a: None)
    results.summarize(workdir, sweep.run_dirs(config, workdir))
    return workdir


def test_laplace_comparison_on_a_laplace_sweep(tiny_laplace_sweep, monkeypatch):
    calls, predict = [], laplace_comparison.predictors.predict

    def counted(name, *args, **kwargs):
        calls.append(name)
        return predict(name, *args, **kwargs)

    monkeypatch.setattr(laplace_comparison.predictors, "predict", counted)
    result = laplace_comparison.run_laplace_comparison(tiny_laplace_sweep, num_samples=300, burn_in=30,
                                                       print_fn=lambda *a: None)
    assert calls.count(names.LAPLACE_MMSE) == 2  # T_true once for every M (it was once per M), M = 2's pool once
    assert sorted(r["num_tasks"] for r in result["runs"]) == [0, 2]
    for run in result["runs"]:
        for eval_set in names.EVAL_SETS:
            assert set(run[eval_set]["loss"]) == set(laplace_comparison.PREDICTORS)
            assert set(run[eval_set]["delta"]) == {pair for pair, _, _ in names.LAPLACE_PAIRS}
    infinite = next(r for r in result["runs"] if r["num_tasks"] == 0)
    assert infinite[names.PRETRAIN] == infinite[names.TRUE]  # at M = ∞ both sets are T_true
    # The model's L/D on T_true is its stored final metric (the parameters were checked against it).
    path = tiny_laplace_sweep / names.ANALYSIS_DIR / names.LAPLACE_FILE
    assert json.loads(path.read_text())["runs"][0]["name"] == result["runs"][0]["name"]


def test_laplace_comparison_refuses_a_gaussian_sweep(tiny_sweep_dir):
    with pytest.raises(ValueError, match="task_prior='laplace'"):
        laplace_comparison.run_laplace_comparison(tiny_sweep_dir, print_fn=lambda *a: None)


def test_figure_scripts_draw_the_stored_analyses(retrained, tiny_laplace_sweep, tiny_sweep_dir, tmp_path):
    bare = retrained[0]  # holds analysis/interpolation.json
    smoothing.run_smoothing(bare, options=FAST_SMOOTHING, print_fn=lambda *a: None)
    if not (tiny_laplace_sweep / names.ANALYSIS_DIR / names.LAPLACE_FILE).exists():
        laplace_comparison.run_laplace_comparison(tiny_laplace_sweep, num_samples=100, burn_in=10,
                                                  print_fn=lambda *a: None)
    for name, workdir in (("interpolation", bare), ("smoothing", bare), ("laplace_comparison", tiny_laplace_sweep)):
        out = tmp_path / name
        subprocess.run([sys.executable, f"experiments/figures/{name}.py", f"--workdir={workdir}", f"--out={out}"],
                       cwd=REPO_ROOT, check=True, capture_output=True, text=True, timeout=120)
        assert_png_and_pdf(list(out.iterdir()), name)
    with pytest.raises(StoreError, match="run python experiments/laplace_comparison.py"):
        estimator_plots.write_analysis_figure("laplace_comparison", tiny_sweep_dir, tmp_path)


def test_named_predictors_for_analyses():
    from icl_regression import estimators, predictors
    from icl_regression.config import DataConfig

    data = DataConfig(dim=3, context_len=6, noise_std=0.5)
    rng_np = np.random.default_rng(0)
    xs = rng_np.standard_normal((10, 6, 3)).astype(np.float32)
    ys = rng_np.standard_normal((10, 6)).astype(np.float32)
    pool = rng_np.standard_normal((5, 3)).astype(np.float32)
    np.testing.assert_array_equal(predictors.predict(names.OLS, data, xs, ys, batch_size=4),
                                  estimators.ols_preds(xs, ys))
    np.testing.assert_allclose(predictors.predict(names.RIDGE_LAMBDA, data, xs, ys, lam=2.0),
                               estimators.ridge_preds(xs, ys, 2.0), rtol=1e-6)
    np.testing.assert_allclose(predictors.predict(names.SMOOTHED_DMMSE, data, xs, ys, pool, smoothing_std=0.0),
                               predictors.predict(names.DMMSE, data, xs, ys, pool), atol=1e-6)
    with pytest.raises(ValueError, match="needs lam"):
        predictors.make_predictor(names.RIDGE_LAMBDA, data)
    with pytest.raises(ValueError, match=r"lam=0.0; allowed: λ > 0 \(λ = 0 is least squares: use 'ols'\)"):
        predictors.make_predictor(names.RIDGE_LAMBDA, data, lam=0.0)
    with pytest.raises(ValueError, match="needs smoothing_std, pool"):
        predictors.make_predictor(names.SMOOTHED_DMMSE, data)
    with pytest.raises(ValueError, match="allowed: ridge, dmmse, ols"):
        predictors.make_predictor("lasso", data)
    distance = predictors.distance(np.zeros((2, 3)), np.ones((2, 3)), dim=4)
    np.testing.assert_allclose(distance, [0.25, 0.25, 0.25])


@pytest.mark.parametrize("name", sorted(estimator_plots.ANALYSIS_FIGURES))
def test_committed_analyses_redraw(name, tmp_path):
    """Every committed analysis JSON draws its figure (the committed figures come from these files alone)."""
    from conftest import COMMITTED_SWEEPS

    filename = estimator_plots.ANALYSIS_FIGURES[name][0]
    folders = [p for p in COMMITTED_SWEEPS.values() if (p / names.ANALYSIS_DIR / filename).exists()]
    if not folders:
        pytest.skip(f"no committed sweep holds {names.ANALYSIS_DIR}/{filename}")
    for folder in folders:
        assert_png_and_pdf(estimator_plots.write_analysis_figure(name, folder, tmp_path / folder.name), name)


def test_interpolation_standard_error_is_over_pairs(monkeypatch):
    """The reported `se` is the standard error over pairs of each pair's mean loss (its docstring), not a
    spread over context positions (the mean is the same either way, the error bar is not)."""
    from types import SimpleNamespace

    from icl_regression.config import run_config_from_dict

    cfg = run_config_from_dict({"data": {"dim": 2, "context_len": 4, "noise_std": 0.5, "num_tasks": 4},
                                "model": {"num_layers": 1, "d_model": 16, "num_heads": 1},
                                "eval": {"batch_size": 64}})
    seen = []

    def zero_preds(run, xs, ys, batch_size=None):  # the "model" predicts 0: its loss is ys²/D
        seen.append(np.asarray(ys, np.float64))
        return jnp.zeros_like(ys)

    monkeypatch.setattr(interpolation.trained, "model_preds", zero_preds)
    options = interpolation.InterpolationOptions(num_pairs=5, num_alphas=2, sequences_per_pair=3)
    curves = interpolation.interpolation_curves(SimpleNamespace(config=cfg), options)
    for a, ys in enumerate(seen):
        per_pair = (ys ** 2 / 2).reshape(5, 3, 4).mean(axis=(1, 2))
        assert curves["loss"][names.PT]["mean"][a] == pytest.approx(per_pair.mean(), rel=1e-9)
        assert curves["loss"][names.PT]["se"][a] == pytest.approx(per_pair.std(ddof=1) / np.sqrt(5), rel=1e-9)


def test_laplace_comparison_scores_each_estimator_by_its_own_predictions(monkeypatch):
    """Ridge's L/D and Δ_PT,Ridge must come from ridge's predictions, dMMSE's from dMMSE's."""
    from types import SimpleNamespace

    rng = np.random.default_rng(0)
    n, k, dim = 6, 4, 2
    sets = {s: SimpleNamespace(xs=np.zeros((n, k, dim)), ys=rng.normal(size=(n, k)), ridge=rng.normal(size=(n, k)),
                               dmmse=rng.normal(size=(n, k)) + 3.0) for s in names.EVAL_SETS}
    cfg = SimpleNamespace(data=SimpleNamespace(dim=dim))
    monkeypatch.setattr(laplace_comparison.trained, "eval_sets", lambda c: sets)
    monkeypatch.setattr(laplace_comparison.trained, "model_preds", lambda run, xs, ys: np.zeros((n, k)))
    monkeypatch.setattr(laplace_comparison, "_laplace", lambda *a: np.zeros((n, k)))
    out = laplace_comparison.compare_run(SimpleNamespace(config=cfg), 10, 1, {})
    for s, data in sets.items():
        np.testing.assert_allclose(out[s]["loss"][names.RIDGE]["per_position"],
                                   ((data.ridge - data.ys) ** 2).mean(0) / dim)
        np.testing.assert_allclose(out[s]["loss"][names.DMMSE]["per_position"],
                                   ((data.dmmse - data.ys) ** 2).mean(0) / dim)
        np.testing.assert_allclose(out[s]["delta"]["pt_ridge"]["per_position"], (data.ridge ** 2).mean(0) / dim)


def test_smoothing_pretrain_tradeoff_is_measured_on_the_pretrain_set(tiny_sweep_dir, tmp_path):
    """At s = 0 smoothed dMMSE is dMMSE, so the first point of `loss_pretrain` must be the stored dMMSE L/D on
    T_pretrain (measuring it on T_true gives the T_true number instead)."""
    result = smoothing.run_smoothing(tiny_sweep_dir, options=smoothing.SmoothingOptions(
        grid_points=3, refinements=0, search_sequences=32), out=tmp_path / "smoothing.json",
        print_fn=lambda *a: None)
    for pool in result["pools"]:
        assert pool["search_curve"]["smoothing_std"][0] == 0.0
        assert pool["search_curve"]["loss_pretrain"][0] == pytest.approx(
            pool[names.PRETRAIN][names.DMMSE]["mean"], rel=1e-4)
