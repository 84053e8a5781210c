"""Threshold against an axis, budget pairing and final values above the threshold, on synthetic rows with known
answers (numpy only: no training)."""

import math

import numpy as np
import pytest

from icl_regression import axes, names, sweep, training_experiments

LOG2_M = np.arange(1, 13)


def synthetic_rows(midpoint_x, crossings=None, budgets=((64, 1000),), seeds=(0, 1, 2), axis_values=None, noise=0.02,
                   rng_seed=0):
    """Rows whose Δ^{T_true}_{PT,Ridge}/Δ_{dMMSE,Ridge} falls through 1/2 at log2 M = `midpoint_x` at every budget,
    and whose larger budget of each pair in `crossings` ({(small, large): x}) is further from ridge below x and closer
    above. Each seed adds a little noise; an M = ∞ row per (budget, seed) sits close to ridge."""
    rng = np.random.default_rng(rng_seed)
    crossings = crossings or {}
    rows = []
    for seed in seeds:
        for budget in budgets:
            for x in LOG2_M:
                scale = 1.0 / (1 + 0.2 * x)
                delta = scale / (1 + np.exp(2.0 * (x - midpoint_x)))
                for (small, large), cross_x in crossings.items():
                    if tuple(budget) == tuple(large):
                        delta *= np.exp(0.3 * np.tanh(cross_x - x))
                delta *= np.exp(noise * rng.standard_normal())
                boot = list(delta * np.exp(noise * rng.standard_normal(20)))
                rows.append(_row(2 ** int(x), budget, seed, delta, scale, boot, axis_values))
            rows.append(_row(0, budget, seed, 1e-3, 0.0, [1e-3] * 20, axis_values))
    return rows


def _row(num_tasks, budget, seed, delta, scale, boot, axis_values):
    # Δ_PT,dMMSE = Δ_dMMSE,Ridge − Δ_PT,Ridge (at M = ∞, where dMMSE is ridge: Δ_PT,Ridge): the midpoint
    # Δ_PT,Ridge = Δ_PT,dMMSE is where Δ_PT,Ridge/Δ_dMMSE,Ridge = 1/2, i.e. at `midpoint_x` of the noiseless curve.
    to_dmmse = (lambda d: scale - d) if num_tasks > 0 else (lambda d: d)
    final = {names.THRESHOLD_METRIC: float(delta), names.THRESHOLD_SCALE: float(scale),
             names.MIDPOINT_METRIC: float(to_dmmse(delta)),
             names.loss_key(names.TRUE, names.PT): 0.5 + float(delta),
             names.delta_key(names.PRETRAIN, "pt_ridge"): float(delta),
             names.loss_key(names.PRETRAIN, names.PT): 0.4 + float(delta),
             names.loss_key(names.TRUE, names.RIDGE): 0.45}
    return {"name": f"M={num_tasks}_B={budget[0]}_N={budget[1]}_seed={seed}", "status": names.DONE,
            "num_tasks": num_tasks, "batch_size": budget[0], "steps": budget[1], "seed": seed, "final": final,
            "bootstrap": {names.THRESHOLD_METRIC: [float(b) for b in boot], names.THRESHOLD_SCALE: [scale] * 20,
                          names.MIDPOINT_METRIC: [float(to_dmmse(b)) for b in boot]},
            "train_loss": 0.0, "axes": dict(axis_values or {})}


def test_budget_pairs_keep_one_coordinate_fixed():
    budgets = [(64, 2500), (128, 2500), (64, 5000), (64, 10000)]
    pairs = {(p["kind"], p["small"], p["large"]) for p in axes.budget_pairs(budgets)}
    assert pairs == {("batch", (64, 2500), (128, 2500)), ("steps", (64, 2500), (64, 5000)),
                     ("steps", (64, 5000), (64, 10000))}


def test_threshold_for_reads_each_explicit_pair_of_a_mixed_sweep():
    """A sweep with batch and steps pairs whose crossings differ: each pair's crossing is recovered on its own."""
    small, wide, long = (64, 1000), (128, 1000), (64, 2000)
    rows = synthetic_rows(6.0, crossings={(small, wide): 4.6, (small, long): 7.3}, budgets=(small, wide, long))
    analysis = training_experiments.budgets_analysis(rows, num_replicates=40)
    found = {c["kind"]: c for c in analysis["crossings"]}
    assert set(found) == {"batch", "steps"}
    assert found["batch"]["log2_num_tasks"] == pytest.approx(4.6, abs=0.25)
    # Far above the midpoint both Δ are small and the difference curves strongly between grid points: the linear
    # interpolation the crossing is defined by puts it at 7.80 (noiseless), in the grid cell of the truth (LOG2_M has
    # unit spacing). The interval is about that interpolated crossing, and stays inside the cell.
    assert found["steps"]["log2_num_tasks"] == pytest.approx(7.80, abs=0.1)
    for c, cell in ((found["batch"], (4, 5)), (found["steps"], (7, 8))):
        lo, hi = c["interval"]
        assert cell[0] <= lo <= c["log2_num_tasks"] <= hi <= cell[1]
    assert analysis["midpoints"]["B=64_N=1000"]["log2_num_tasks"] == pytest.approx(6.0, abs=0.3)
    ladder = analysis["steps_ladder"][0]  # the longer budget's curve is tilted by its crossing: a small shift
    assert ladder["steps"] == [1000, 2000] and 0 < ladder["shift_log2"] < 0.6
    text = training_experiments.format_budgets(analysis)
    assert "B=64_N=1000_vs_B=128_N=1000" in text and "B=64_N=1000_vs_B=64_N=2000" in text
    assert "B=64_N=2000_vs_B=128_N=1000" not in text  # as many sequences seen: never a pair


def test_threshold_for_rejects_budgets_it_cannot_pair():
    rows = synthetic_rows(6.0)
    with pytest.raises(ValueError, match="one or two budgets"):
        axes.threshold_for(rows, [(64, 1000), (128, 1000), (64, 2000)])
    with pytest.raises(ValueError, match="no rows at budgets"):
        axes.threshold_for(rows, [(512, 1000)])


def test_a_known_dependence_of_the_threshold_on_dimension_is_recovered():
    """M* = 3·D by construction: κ* = 3 at every D and the log-log slope is 1."""
    rows = []
    for dim in (1, 2, 4, 8):
        rows += synthetic_rows(math.log2(3 * dim), axis_values={axes.DIM: dim}, rng_seed=dim)
    analysis = training_experiments.dimension_analysis(rows, num_replicates=40)
    assert [e["value"][axes.DIM] for e in analysis["entries"]] == [1, 2, 4, 8]
    for e in analysis["entries"]:
        assert e["primary"]["method"].startswith("midpoint")
        assert e["kappa"]["value"] == pytest.approx(3.0, rel=0.15)
        lo, hi = e["kappa"]["interval"]
        assert lo <= e["kappa"]["value"] <= hi
        assert e["num_seeds"] == 3 and e["largest_num_tasks"] == 2**12
        assert e["dmmse_ridge_at_largest"]["mean"] == pytest.approx(1 / (1 + 0.2 * 12))
    assert analysis["log2_slope"] == pytest.approx(1.0, abs=0.1)
    assert "κ*" in training_experiments.format_dimension(analysis)


def test_capacity_series_recover_each_setting_and_the_loss_cost():
    """M* falls by one octave per decade of weight decay on the small model and stays put on the larger one."""
    rows, truth = [], {}
    for layers, wds in ((2, (0.0, 0.01, 0.1)), (4, (0.0, 0.1))):
        for wd in wds:
            x = 6.0 - (0 if wd == 0 or layers == 4 else 3 + math.log10(wd))
            truth[(wd, 32, layers)] = x
            rows += synthetic_rows(x, axis_values={axes.WEIGHT_DECAY: wd, axes.WIDTH: 32, axes.DEPTH: layers})
    for width in (16, 64):
        truth[(0.0, width, 2)] = 6.0
        rows += synthetic_rows(6.0, axis_values={axes.WEIGHT_DECAY: 0.0, axes.WIDTH: width, axes.DEPTH: 2})
    analysis = training_experiments.capacity_analysis(rows, num_replicates=30)
    for e in analysis["entries"]:
        key = tuple(e["value"][a] for a in training_experiments.CAPACITY_AXES)
        assert e["primary"]["log2_num_tasks"] == pytest.approx(truth[key], abs=0.3), key
        assert e["infinite_true_loss"]["mean"] == pytest.approx(0.501)
    wd_series = {tuple(s["fixed"].values()): [p["value"][axes.WEIGHT_DECAY] for p in s["points"]]
                 for s in analysis["series"][axes.WEIGHT_DECAY]}
    assert wd_series == {(32, 2): [0.0, 0.01, 0.1], (32, 4): [0.0, 0.1]}
    assert [p["value"][axes.WIDTH] for p in analysis["series"][axes.WIDTH][0]["points"]] == [16, 32, 64]
    assert analysis["ridge_true_loss"] == pytest.approx(0.45)
    assert "weight_decay" in training_experiments.format_capacity(analysis)


def test_final_values_above_the_threshold_against_the_infinite_model():
    rows = synthetic_rows(5.0, noise=0.0)
    out = axes.final_values_above(rows, 5.0, (64, 1000))
    assert [e["num_tasks"] for e in out["above"]] == [2**x for x in range(6, 13)]
    first = out["above"][0]
    assert first[names.THRESHOLD_METRIC]["n"] == 3 and first[names.THRESHOLD_METRIC]["std"] == pytest.approx(0.0)
    assert first["ratio_to_infinite"][names.THRESHOLD_METRIC] == pytest.approx(
        first[names.THRESHOLD_METRIC]["mean"] / 1e-3)
    assert out["infinite"][names.loss_key(names.TRUE, names.PT)]["mean"] == pytest.approx(0.501)
    analysis = training_experiments.above_threshold_analysis(rows, num_replicates=20)
    assert analysis["budgets"][0]["threshold"]["log2_num_tasks"] == pytest.approx(5.0, abs=0.2)
    assert "M=inf" in training_experiments.format_above_threshold(analysis)


def test_seed_stats_spread():
    stats = axes.seed_stats([1.0, 2.0, 3.0, math.nan])
    assert (stats["mean"], stats["std"], stats["min"], stats["max"], stats["n"]) == (2.0, 1.0, 1.0, 3.0, 3)
    assert axes.seed_stats([])["n"] == 0
    assert math.isnan(axes.seed_stats([2.0])["std"])  # one seed: the spread is unknown, not 0


def test_one_seed_thresholds_say_their_interval_is_evaluation_noise_only():
    """SPEC: with one seed the interval measures evaluation noise only and must say so (the axis analyses dropped
    the note, so a one-seed GPU run of experiments 4 and 5 would have printed a plain 95% interval)."""
    rows = []
    for dim in (2, 4):
        rows += synthetic_rows(math.log2(3 * dim), seeds=(0,), axis_values={axes.DIM: dim}, rng_seed=dim)
    analysis = training_experiments.dimension_analysis(rows, num_replicates=20)
    for entry in analysis["entries"]:
        assert entry["primary"]["num_seeds"] == 1
        assert entry["primary"]["interval_source"].startswith("evaluation noise only")
    text = training_experiments.format_dimension(analysis)
    assert text.count("(evaluation noise only: 1 seed)") == 2 and "± nan" in text, text
    three = training_experiments.dimension_analysis(synthetic_rows(3.0, axis_values={axes.DIM: 1}), num_replicates=20)
    assert three["entries"][0]["primary"]["interval_source"].startswith("3 seeds")


def test_union_of_grids_expands_each_cell_once(tmp_path):
    config = {"data": {"dim": 2, "context_len": 4}, "model": {"num_layers": 1, "d_model": 16},
              "sweep": {"grid": {},
                        "grids": ({"train": {"batch_size": (16, 32), "steps": (10,)}},
                                  {"train": {"batch_size": (16,), "steps": (10, 20)}})}}
    cells = sweep.expand(config, tmp_path)
    assert [(c.config.train.batch_size, c.config.train.steps) for c in cells] == [(16, 10), (32, 10), (16, 20)]
    config["sweep"]["grid"] = {"train": {"batch_size": (8,)}}  # a non-empty `grid` adds its cells first
    assert [c.config.train.batch_size for c in sweep.expand(config, tmp_path)][0] == 8


def test_above_threshold_falls_back_to_a_crossing_where_the_midpoint_is_not_located():
    small, wide = (64, 1000), (128, 1000)
    rows = synthetic_rows(40.0, crossings={(small, wide): 6.5}, budgets=(small, wide))  # ratio ≈ 1: no midpoint
    analysis = training_experiments.above_threshold_analysis(rows, num_replicates=20)
    for b in analysis["budgets"]:
        assert b["threshold_source"] == "crossing B=64_N=1000_vs_B=128_N=1000"
        assert b["threshold"]["log2_num_tasks"] == pytest.approx(6.5, abs=0.3)
        assert [e["num_tasks"] for e in b["above"]] == [2**x for x in range(7, 13)]
        assert len(b["all"]) == 12


def test_ratio_curve_is_the_position_between_ridge_and_dmmse():
    """r = Δ_PT,Ridge / (Δ_PT,Ridge + Δ_PT,dMMSE) ∈ [0, 1] (1/2 where the midpoint curve crosses 0)."""
    rows = [{"status": names.DONE, "num_tasks": 4, "batch_size": 16, "steps": 100, "seed": s, "axes": {},
             "final": {names.THRESHOLD_METRIC: d_ridge, names.MIDPOINT_METRIC: d_dmmse}}
            for s, (d_ridge, d_dmmse) in enumerate([(1.0, 3.0), (3.0, 1.0)])]
    [curve] = axes.ratio_curves(rows)
    assert curve["values"] == [0.25, 0.75] and curve["mean"] == 0.5


def test_primary_estimate_falls_back_to_the_largest_budgets_midpoint():
    """Without a located crossing an axis figure plots the midpoint of the largest budget (the last one)."""
    est = lambda x: {"log2_num_tasks": x, "interval": [x - 1, x + 1]}  # noqa: E731
    entry = {"crossing": None, "midpoint": {axes.budget_label((16, 100)): est(3.0),
                                            axes.budget_label((32, 100)): est(4.0)}}
    chosen = axes.primary(entry)
    assert chosen["method"] == f"midpoint {axes.budget_label((32, 100))}" and chosen["log2_num_tasks"] == 4.0


def test_final_values_leave_out_runs_that_did_not_finish():
    """A diverged run's last finite numbers must not enter the seed statistics of the figures."""
    key = names.THRESHOLD_METRIC
    rows = [{"status": status, "num_tasks": 4, "batch_size": 16, "steps": 100, "seed": s, "axes": {},
             "final": {key: value}}
            for s, (status, value) in enumerate([(names.DONE, 0.1), (names.DONE, 0.3), (names.DIVERGED, 50.0)])]
    [entry] = axes.final_values(rows, [key])
    assert entry[key]["n"] == 2 and entry[key]["mean"] == pytest.approx(0.2)
