"""Training dynamics on synthetic metrics records with a known t* and a known exponent α."""

import json
import math

import numpy as np
import pytest

from icl_regression import dynamics, names, results
from icl_regression.store import RunStore, atomic_write_text

EVAL_INTERVAL = 50
TOTAL_STEPS = 20_000


def curve_records(t_star: float, depth: float = 0.5, rise: float = 1.0, start: float = 1.0,
                  steps=range(0, TOTAL_STEPS + 1, EVAL_INTERVAL)) -> list[dict]:
    """Δ falls linearly from `start` to `start - depth` at t*, then rises by `rise` over the run."""
    records = []
    for step in steps:
        value = start - depth * min(step / t_star, 1.0) + rise * max(step - t_star, 0) / TOTAL_STEPS
        records.append({"step": step, "learning_rate": 1e-3, "train_loss": None, "diverged": False,
                        "mean": {names.THRESHOLD_METRIC: value}, "per_position": {}})
    return records


def row(name: str, num_tasks: int, batch_size: int = 64, seed: int = 0, status: str = names.DONE) -> dict:
    return {"name": name, "num_tasks": num_tasks, "batch_size": batch_size, "steps": TOTAL_STEPS, "seed": seed,
            "status": status}


def power_law_sweep(alpha: float, prefactor: float, num_tasks=(2, 4, 8, 16, 32), seeds=(0, 1)):
    metrics, rows = {}, []
    for m in num_tasks:
        for seed in seeds:
            name = f"M={m}_seed={seed}"
            metrics[name] = curve_records(prefactor * m**alpha * (1 + 0.02 * seed))
            rows.append(row(name, m, seed=seed))
    return metrics, rows


def test_t_star_is_the_evaluated_step_of_the_minimum():
    steps, values = dynamics.metric_curve(curve_records(t_star=1_000))
    result = dynamics.closest_approach(steps, values)
    assert result["t_star"] == 1_000
    assert result["kind"] == dynamics.TRANSIENT
    assert result["min_value"] == pytest.approx(0.5)


def test_t_star_has_the_resolution_of_the_evaluation_interval():
    records = curve_records(t_star=1_030)  # between evaluations at 1000 and 1050
    t_star = dynamics.closest_approach(*dynamics.metric_curve(records))["t_star"]
    assert t_star in (1_000, 1_050)


def test_step_zero_is_excluded():
    records = curve_records(t_star=1_000)
    records[0]["mean"][names.THRESHOLD_METRIC] = 0.0  # lowest at initialisation
    assert dynamics.closest_approach(*dynamics.metric_curve(records))["t_star"] == 1_000


def test_curve_still_approaching_ridge_at_the_end_is_monotone():
    result = dynamics.closest_approach(*dynamics.metric_curve(curve_records(t_star=10 * TOTAL_STEPS)))
    assert result["t_star"] == TOTAL_STEPS
    assert result["kind"] == dynamics.MONOTONE


def test_small_rise_after_the_minimum_is_monotone_unless_the_margin_allows_it():
    records = curve_records(t_star=1_000, rise=0.05)  # final = 0.55 × … = 1.1 × minimum
    steps, values = dynamics.metric_curve(records)
    assert dynamics.closest_approach(steps, values)["kind"] == dynamics.MONOTONE
    assert dynamics.closest_approach(steps, values, margin=1.05)["kind"] == dynamics.TRANSIENT


def test_curve_that_moves_away_from_ridge_from_the_start_is_monotone():
    records = curve_records(t_star=50, depth=-0.2)  # rises from the first evaluation on
    result = dynamics.closest_approach(*dynamics.metric_curve(records))
    assert result["t_star"] == 50
    assert result["kind"] == dynamics.MONOTONE


def test_curve_without_finite_values_has_no_data():
    records = curve_records(t_star=1_000)
    for record in records[1:]:
        record["mean"][names.THRESHOLD_METRIC] = math.nan
    result = dynamics.closest_approach(*dynamics.metric_curve(records))
    assert result["kind"] == dynamics.NO_DATA and math.isnan(result["t_star"])


def test_power_law_recovers_alpha():
    metrics, rows = power_law_sweep(alpha=0.7, prefactor=300.0)
    fit = dynamics.summarize_dynamics(metrics, rows)["dynamics"]["power_law"]
    assert fit["num_points"] == 5
    assert fit["alpha"] == pytest.approx(0.7, abs=0.03)
    assert fit["prefactor"] == pytest.approx(300.0 * 1.01, rel=0.1)  # median over the two seeds
    lo, hi = fit["alpha_interval"]
    assert lo <= fit["alpha"] <= hi and hi - lo < 0.1


def test_power_law_interval_is_reproducible_and_covers_a_noisy_alpha():
    rng = np.random.default_rng(1)
    m = np.array([2, 4, 8, 16, 32, 64, 128])
    t = 100 * m**0.5 * np.exp(0.1 * rng.standard_normal(len(m)))
    first, second = dynamics.fit_power_law(m, t), dynamics.fit_power_law(m, t)
    assert first["alpha_interval"] == second["alpha_interval"]
    lo, hi = first["alpha_interval"]
    assert lo < 0.5 < hi


def test_monotone_and_infinite_m_are_left_out_of_the_fit():
    metrics, rows = power_law_sweep(alpha=0.7, prefactor=300.0, seeds=(0,))
    metrics["M=64"], metrics["M=inf"] = curve_records(10 * TOTAL_STEPS), curve_records(500)  # inf: transient
    rows += [row("M=64", 64), row("M=inf", 0)]
    dyn = dynamics.summarize_dynamics(metrics, rows)["dynamics"]
    kinds = {p["num_tasks"]: p["kind"] for p in dyn["per_num_tasks"]}
    assert kinds[64] == dynamics.MONOTONE and kinds[0] == dynamics.TRANSIENT
    assert dyn["power_law"]["num_points"] == 5
    assert dyn["power_law"]["alpha"] == pytest.approx(0.7, abs=0.03)


@pytest.mark.parametrize("num_transient", [0, 1, 2])
def test_fewer_than_three_transient_m_give_no_interval_and_say_why(num_transient):
    metrics, rows = power_law_sweep(alpha=0.7, prefactor=300.0, num_tasks=(2, 4, 8)[:num_transient], seeds=(0,))
    for m in (64, 128):
        metrics[f"M={m}"] = curve_records(10 * TOTAL_STEPS)
        rows.append(row(f"M={m}", m))
    fit = dynamics.summarize_dynamics(metrics, rows)["dynamics"]["power_law"]
    assert fit["num_points"] == num_transient
    assert all(math.isnan(x) for x in fit["alpha_interval"])
    assert "at least 3" in fit["note"]
    assert math.isfinite(fit["alpha"]) == (num_transient == 2)


def test_seeds_are_aggregated_by_median_and_diverged_runs_left_out():
    metrics, rows = {}, []
    for seed, t_star in enumerate((1_000, 2_000, 4_000)):
        metrics[f"s{seed}"] = curve_records(t_star)
        rows.append(row(f"s{seed}", 8, seed=seed))
    metrics["bad"] = curve_records(100)
    rows.append(row("bad", 8, seed=3, status=names.DIVERGED))
    dyn = dynamics.summarize_dynamics(metrics, rows)["dynamics"]
    assert len(dyn["per_run"]) == 4
    (point,) = dyn["per_num_tasks"]
    assert point["num_seeds"] == 3 and point["t_star_median"] == 2_000 and point["t_star_transient"] == 2_000


def test_one_fit_per_budget_and_the_largest_budget_is_primary():
    metrics, rows = power_law_sweep(alpha=0.7, prefactor=300.0, seeds=(0,))
    for m in (2, 4, 8, 16, 32):
        metrics[f"big M={m}"] = curve_records(600.0 * m**0.5)
        rows.append(row(f"big M={m}", m, batch_size=128))
    dyn = dynamics.summarize_dynamics(metrics, rows)["dynamics"]
    assert set(dyn["power_law_by_budget"]) == {f"B=64_N={TOTAL_STEPS}", f"B=128_N={TOTAL_STEPS}"}
    assert dyn["power_law"]["batch_size"] == 128
    assert dyn["power_law"]["alpha"] == pytest.approx(0.5, abs=0.03)


def test_dynamics_from_the_store_is_json(tmp_path):
    metrics, rows = power_law_sweep(alpha=0.7, prefactor=300.0, seeds=(0,))
    for name, records in metrics.items():
        run = RunStore(tmp_path / names.RUNS_DIR / name)
        run.init({"name": name})
        atomic_write_text(run.dir / names.METRICS_FILE, "".join(json.dumps(r) + "\n" for r in records))
    extra = dynamics.summarize_dynamics(results.run_metrics(tmp_path), rows)
    assert extra["dynamics"]["power_law"]["alpha"] == pytest.approx(0.7, abs=0.03)
    json.loads(json.dumps(extra))
    assert "M^" in dynamics.format_dynamics(extra)
