"""Training dynamics on synthetic metrics records with a known t* (three ways), known noise and a known exponent."""

import json
import math

import numpy as np
import pytest

from icl_regression import dynamics, names, results
from icl_regression.config import ConfigError, RunConfig
from icl_regression.store import RunStore, atomic_write_text, write_json

EVAL_INTERVAL = 250
TOTAL_STEPS = 10_000
STEPS = np.arange(0, TOTAL_STEPS + 1, EVAL_INTERVAL)
RIDGE_LOSS = 0.45
DELTA, LOSS, WEIGHT = (dynamics.DEFINITION_KEYS[d] for d in dynamics.DEFINITIONS)


def valley(t_star: float, curvature: float = 0.1, floor: float = 0.2):
    """Δ(t): a parabola in ln t with its minimum at t*."""
    return lambda step: floor + curvature * (math.log(max(step, 1)) - math.log(t_star)) ** 2


def switch(t_cross: float, width: float = 0.6):
    """a(t): falls from 0.9 to 0.1 through 1/2 at t_cross."""
    return lambda step: 0.5 + 0.4 * math.tanh((math.log(t_cross) - math.log(max(step, 1))) / width)


def records(delta, weight, jitter: float = 0.0, eval_noise: float = 0.0, num_replicates: int = 0,
            seed: int = 0, steps=STEPS) -> list[dict]:
    """Metrics records of one run. `jitter`: training noise, independent between evaluations; `eval_noise`: the
    evaluation-sequence noise, an offset shared by every evaluation of one replicate (the same sequences)."""
    rng = np.random.default_rng(seed)
    offsets = eval_noise * rng.standard_normal((num_replicates, 2))
    out = []
    for step in steps:
        d = delta(step) + jitter * rng.standard_normal()
        a = weight(step) + jitter * rng.standard_normal()
        record = {"step": int(step), "learning_rate": 1e-3, "train_loss": None, "diverged": False,
                  "mean": {DELTA: d, LOSS: RIDGE_LOSS + d, WEIGHT: a, names.THRESHOLD_SCALE: 1.0,
                           names.MIDPOINT_METRIC: 1.0 - d},
                  "per_position": {}}
        if num_replicates:
            record["bootstrap"] = {DELTA: list(d + offsets[:, 0]), LOSS: list(RIDGE_LOSS + d + offsets[:, 0]),
                                   WEIGHT: list(a + offsets[:, 1])}
        out.append(record)
    return out


def row(name: str, num_tasks: int, seed: int = 0, batch_size: int = 64, status: str = names.DONE) -> dict:
    return {"name": name, "num_tasks": num_tasks, "batch_size": batch_size, "steps": TOTAL_STEPS, "seed": seed,
            "status": status}


def sweep(curves_by_m: dict, seeds=(0, 1, 2), **noise) -> tuple[dict, list]:
    """{M: (delta, weight)} → (metrics by run, rows), one run per seed."""
    metrics, rows = {}, []
    for m, (delta, weight) in curves_by_m.items():
        for seed in seeds:
            name = f"M={m}_seed={seed}"
            metrics[name] = records(delta, weight, seed=1000 * m + seed, **noise)
            rows.append(row(name, m, seed))
    return metrics, rows


def locate(definition, recs):
    return dynamics.locate(definition, *dynamics.metric_curve(recs, dynamics.DEFINITION_KEYS[definition]))


# --- t* on one curve, below the grid. ---


@pytest.mark.parametrize("t_star", [1_130, 2_870, 6_130])
def test_minimum_between_evaluations_is_located_below_the_grid(t_star):
    recs = records(valley(t_star), switch(5_000))
    for definition in (dynamics.RIDGE, dynamics.LOSS):
        result = locate(definition, recs)
        assert result["status"] == dynamics.LOCATED
        assert result["t_star"] == pytest.approx(t_star, abs=0.05 * EVAL_INTERVAL)
        assert abs(result["grid_step"] - t_star) > 0.1 * EVAL_INTERVAL  # the grid alone cannot say it


def test_local_fit_is_closer_than_the_grid_argmin_on_jittery_curves():
    errors_fit, errors_grid = [], []
    for seed in range(100):
        t_star = 1_500 + 40 * seed
        result = locate(dynamics.RIDGE, records(valley(t_star), switch(5_000), jitter=0.01, seed=seed))
        errors_fit.append(math.log(result["t_star"] / t_star))
        errors_grid.append(math.log(result["grid_step"] / t_star))
    rms = lambda e: float(np.sqrt(np.mean(np.square(e))))  # noqa: E731
    assert rms(errors_fit) < 0.75 * rms(errors_grid)
    assert abs(np.mean(errors_fit)) < 0.05  # no systematic shift on a symmetric valley


@pytest.mark.parametrize("t_cross", [730, 4_321, 8_888])
def test_crossing_of_one_half_is_located_between_evaluations(t_cross):
    result = locate(dynamics.MIXTURE, records(valley(3_000), switch(t_cross)))
    assert result["status"] == dynamics.LOCATED
    assert result["t_star"] == pytest.approx(t_cross, rel=0.02)


def test_the_last_crossing_counts():
    recs = records(valley(3_000), lambda step: 0.8 if step < 2_000 or 4_000 < step < 6_000 else 0.2)
    t_star = locate(dynamics.MIXTURE, recs)["t_star"]
    assert 5_750 - 1e-6 <= t_star <= 6_000 + 1e-6  # between the last evaluation above 1/2 and the next


@pytest.mark.parametrize("weight, status", [(lambda s: 0.8, dynamics.AT_END), (lambda s: 0.3, dynamics.NEVER),
                                            (lambda s: math.nan, dynamics.UNDEFINED)])
def test_crossing_statuses(weight, status):
    assert locate(dynamics.MIXTURE, records(valley(3_000), weight))["status"] == status


def test_step_zero_is_excluded():
    recs = records(valley(3_000), switch(5_000))
    recs[0]["mean"][DELTA] = 0.0  # lowest at initialisation
    assert locate(dynamics.RIDGE, recs)["t_star"] == pytest.approx(3_000, rel=0.01)


def test_curve_still_approaching_ridge_at_the_end_and_curve_leaving_it_from_the_start():
    assert locate(dynamics.RIDGE, records(valley(10 * TOTAL_STEPS), switch(5_000)))["status"] == dynamics.AT_END
    assert locate(dynamics.RIDGE, records(valley(10), switch(5_000)))["status"] == dynamics.AT_START


# --- A group of seeds: intervals and the kind. ---


def analyse(curves_by_m: dict, seeds=(0, 1, 2), **noise) -> dict:
    metrics, rows = sweep(curves_by_m, seeds, **noise)
    return {p["num_tasks"]: p for p in dynamics.summarize_dynamics(metrics, rows)["dynamics"]["per_num_tasks"]}


def test_intervals_cover_the_known_t_star_and_shrink_with_the_noise():
    widths = []
    for jitter in (0.02, 0.005):
        (point,) = analyse({6: (valley(3_000), switch(6_000))}, jitter=jitter, eval_noise=0.01,
                           num_replicates=16).values()
        for definition, truth in ((dynamics.RIDGE, 3_000), (dynamics.LOSS, 3_000), (dynamics.MIXTURE, 6_000)):
            entry = point["t_star"][definition]
            lo, hi = entry["interval"]
            assert lo <= truth <= hi, (jitter, definition, entry)
        lo, hi = point["t_star"][dynamics.RIDGE]["interval"]
        widths.append(hi - lo)
        assert "bootstrap over 3 seeds × 16 evaluation-sequence replicates" in point["noise"]
    assert widths[1] < 0.6 * widths[0]


def test_a_rise_larger_than_its_noise_is_transient_and_a_smaller_one_unresolved():
    rising = lambda step: valley(3_000)(step) + (0.1 if step > 3_000 else 0.0) * (step - 3_000) / 7_000  # noqa
    flat = lambda step: valley(3_000, curvature=0.002)(step)  # noqa: E731  (rises by 0.003 over the run)
    points = analyse({5: (rising, switch(6_000)), 6: (flat, switch(6_000))}, jitter=0.02, eval_noise=0.01,
                     num_replicates=16)
    assert points[5]["kind"] == dynamics.TRANSIENT and points[5]["rise_interval"][0] > 0
    assert points[6]["kind"] == dynamics.UNRESOLVED and "within its noise" in points[6]["reason"]
    lo, hi = points[6]["rise_interval"]
    assert lo < 0 < hi


def test_a_small_dip_is_transient_when_the_noise_is_smaller_still():
    dip = valley(3_000, curvature=0.01)  # Δ rises by about 0.011 from t* to the end
    assert analyse({5: (dip, switch(500))}, jitter=0.001)[5]["kind"] == dynamics.TRANSIENT
    assert analyse({5: (dip, switch(500))}, jitter=0.03)[5]["kind"] == dynamics.UNRESOLVED


def test_the_rise_interval_is_t_times_the_standard_error_over_seeds():
    """Four seeds whose curves differ only after t* by their own offset: their rises differ by exactly those
    offsets, so the interval's half-width is t(3 dof) · sd(offsets) / √4 (no evaluation replicates, no jitter)."""
    offsets = (0.0, 0.01, 0.03, 0.02)
    metrics, rows = {}, []
    for seed, offset in enumerate(offsets):
        shifted = lambda step, c=offset: valley(3_000)(step) + (c if step >= 5_000 else 0.0)  # noqa: E731
        metrics[f"seed={seed}"] = records(shifted, switch(6_000))
        rows.append(row(f"seed={seed}", 6, seed))
    (point,) = dynamics.summarize_dynamics(metrics, rows)["dynamics"]["per_num_tasks"]
    lo, hi = point["rise_interval"]
    assert (hi - lo) / 2 == pytest.approx(dynamics.student_t_quantile(3) * np.std(offsets, ddof=1) / 2, rel=1e-6)


def test_student_t_quantiles_are_two_sided():
    """The 95% two-sided quantiles (tables: 12.706, 4.303, 3.182, 2.776, 2.228; normal 1.960), within the stated
    accuracy of the approximation beyond 2 degrees of freedom."""
    for dof, table, rel in ((1, 12.706, 1e-4), (2, 4.303, 1e-4), (3, 3.182, 0.01), (4, 2.776, 0.004),
                            (10, 2.228, 0.001), (math.inf, 1.960, 1e-3)):
        assert dynamics.student_t_quantile(dof) == pytest.approx(table, rel=rel), dof


def test_monotone_kinds_say_why():
    points = analyse({8: (valley(10 * TOTAL_STEPS), switch(20_000)), 4: (valley(10), switch(300))}, jitter=0.001)
    assert points[8]["kind"] == points[4]["kind"] == dynamics.MONOTONE
    assert "still approaching ridge" in points[8]["reason"]
    assert "moving away from ridge from the start" in points[4]["reason"]
    assert points[8]["t_star"][dynamics.MIXTURE]["status"] == dynamics.AT_END


def test_one_seed_without_replicates_has_no_interval_and_judges_the_rise_by_its_jitter():
    (point,) = analyse({6: (valley(3_000), switch(6_000))}, seeds=(0,), jitter=0.01).values()
    assert point["t_star"][dynamics.RIDGE]["value"] == pytest.approx(3_000, rel=0.2)
    assert all(math.isnan(x) for x in point["t_star"][dynamics.RIDGE]["interval"])
    assert point["noise"].startswith("none (one seed")
    assert point["kind"] == dynamics.TRANSIENT and point["rise_noise"] == dynamics.RISE_NOISE_ONE


def test_infinite_m_has_no_mixture_weight_and_is_left_out_of_the_fits():
    nan_weight = lambda step: math.nan  # noqa: E731
    points = analyse({0: (valley(3_000), nan_weight)}, jitter=0.001)
    assert points[0]["t_star"][dynamics.MIXTURE]["status"] == dynamics.UNDEFINED
    assert points[0]["t_star"][dynamics.RIDGE]["status"] == dynamics.LOCATED


# --- Power laws. ---


def power_law_curves(alpha_min: float, alpha_cross: float, num_tasks=(4, 5, 6, 7, 8)) -> dict:
    return {m: (valley(120 * m**alpha_min), switch(40 * m**alpha_cross)) for m in num_tasks}


def test_known_exponents_are_recovered_with_intervals():
    metrics, rows = sweep(power_law_curves(alpha_min=1.6, alpha_cross=2.5), jitter=0.004, eval_noise=0.004,
                          num_replicates=8)
    fits = dynamics.summarize_dynamics(metrics, rows)["dynamics"]["power_law"]
    assert fits["fit_num_tasks"] == [4, 5, 6, 7, 8] and fits["fit_set"] == "the transient M"
    for definition, alpha in ((dynamics.RIDGE, 1.6), (dynamics.LOSS, 1.6), (dynamics.MIXTURE, 2.5)):
        fit = fits[definition]
        lo, hi = fit["alpha_interval"]
        assert fit["alpha"] == pytest.approx(alpha, abs=0.1), definition
        assert lo <= alpha <= hi and hi - lo < 0.6, (definition, fit)
        assert fit["num_points"] == 5


def test_fit_over_named_m_and_over_transient_m_only_by_default():
    curves = power_law_curves(alpha_min=1.0, alpha_cross=1.0, num_tasks=(4, 5, 6))
    curves[64] = (valley(10 * TOTAL_STEPS), switch(20_000))  # monotone
    curves[0] = (valley(500), lambda step: math.nan)  # M = ∞: never in a fit
    metrics, rows = sweep(curves, jitter=0.002)
    default = dynamics.summarize_dynamics(metrics, rows)["dynamics"]["power_law"]
    assert default["fit_num_tasks"] == [4, 5, 6]
    named = dynamics.summarize_dynamics(metrics, rows, fit_num_tasks=(4, 5, 64, 128))["dynamics"]["power_law"]
    assert named["fit_num_tasks"] == [4, 5, 64] and "[128] not in this budget" in named["fit_set"]
    assert named[dynamics.RIDGE]["num_points"] == 2  # M = 64 has no t* inside the run
    assert "left out (t* not inside the run): M = [64]" in named[dynamics.RIDGE]["note"]


def test_no_transient_m_prints_a_sentence_not_nan():
    metrics, rows = sweep({m: (valley(10 * TOTAL_STEPS), switch(20_000)) for m in (8, 16)}, jitter=0.002)
    dyn = dynamics.summarize_dynamics(metrics, rows)
    text = dynamics.format_dynamics(dyn)
    assert text.count("no transient M in this sweep") == 1
    assert "nan" not in text.lower()


def test_printout_gives_every_m_its_three_t_stars_kind_and_reason_and_three_alphas():
    metrics, rows = sweep(power_law_curves(alpha_min=1.0, alpha_cross=2.0), jitter=0.004, eval_noise=0.004,
                          num_replicates=8)
    text = dynamics.format_dynamics(dynamics.summarize_dynamics(metrics, rows))
    for label in dynamics.DEFINITION_LABELS.values():
        assert text.count(label) == 2  # a column and a fit line
    for m in (4, 5, 6, 7, 8):
        assert f"M={m}, B=64: transient: Δ rises by" in text
    assert text.count("ridge weight a peaks at 0.8") + text.count("ridge weight a peaks at 0.9") == 5
    assert text.count("α = ") == 3 and "nan" not in text.lower()


def test_seeds_and_budgets_are_grouped_and_diverged_runs_left_out():
    metrics, rows = sweep({6: (valley(3_000), switch(6_000))}, jitter=0.002)
    metrics["bad"] = records(valley(100), switch(200))
    rows.append(row("bad", 6, seed=3, status=names.DIVERGED))
    metrics["big"] = records(valley(2_000), switch(4_000))
    rows.append(row("big", 6, batch_size=128))
    dyn = dynamics.summarize_dynamics(metrics, rows)["dynamics"]
    assert len(dyn["per_run"]) == 5
    assert [(p["batch_size"], p["num_seeds"]) for p in dyn["per_num_tasks"]] == [(64, 3), (128, 1)]
    assert set(dyn["power_law_by_budget"]) == {f"B=64_N={TOTAL_STEPS}", f"B=128_N={TOTAL_STEPS}"}
    assert dyn["power_law"]["batch_size"] == 128  # the largest budget is the primary fit


def test_analysis_settings_come_from_the_sweep_config():
    assert dynamics.analysis_settings(None) == {"fit_num_tasks": ()}
    config = {"sweep": {"grid": {}, "analysis": {"fit_num_tasks": [5, "6", 7]}}}
    assert dynamics.analysis_settings(config) == {"fit_num_tasks": (5, 6, 7)}
    with pytest.raises(ConfigError, match="M = ∞"):
        dynamics.analysis_settings({"sweep": {"analysis": {"fit_num_tasks": [4, "inf"]}}})
    with pytest.raises(ConfigError, match="unknown sweep.analysis"):
        dynamics.analysis_settings({"sweep": {"analysis": {"fit_range": [4, 8]}}})


def test_sweep_summary_from_the_store_uses_the_stored_fit_setting_and_is_json(tmp_path):
    metrics, rows = sweep(power_law_curves(alpha_min=1.0, alpha_cross=1.5), seeds=(0,), jitter=0.002,
                          eval_noise=0.002, num_replicates=4)
    run_dirs = []
    for name, recs in metrics.items():
        run = RunStore(tmp_path / names.RUNS_DIR / name)
        summary = next(r for r in rows if r["name"] == name)
        run.init(RunConfig().replace(data={"num_tasks": summary["num_tasks"]}, eval={"interval": EVAL_INTERVAL},
                                     train={"steps": TOTAL_STEPS, "seed": summary["seed"]}).to_dict())
        atomic_write_text(run.dir / names.METRICS_FILE, "".join(json.dumps(r) + "\n" for r in recs))
        write_json(run.dir / names.SUMMARY_FILE, {**summary, "num_tasks_label": str(summary["num_tasks"]),
                                                  "final": recs[-1]["mean"], "step": TOTAL_STEPS, "bootstrap": {}, "train_loss": 0.1})
        run_dirs.append(run.dir)
    write_json(tmp_path / names.SWEEP_CONFIG_FILE, {"sweep": {"analysis": {"fit_num_tasks": [5, 6, 7]}}})
    summary = results.summarize(tmp_path, run_dirs)
    assert summary["dynamics"]["power_law"]["fit_num_tasks"] == [5, 6, 7]
    assert summary["dynamics"]["power_law"][dynamics.RIDGE]["alpha"] == pytest.approx(1.0, abs=0.1)
    json.loads(json.dumps(summary))
    assert "evaluation sequences only" in dynamics.format_dynamics(results.load_summary(tmp_path))


def test_an_analysis_section_changes_no_cell_of_the_sweep(tmp_path):
    from conftest import TINY_SWEEP

    from icl_regression import sweep

    with_analysis = {**TINY_SWEEP, "sweep": {**TINY_SWEEP["sweep"], "analysis": {"fit_num_tasks": (2, 8)}}}
    cells = lambda config: [c.name for c in sweep.expand(config, tmp_path)]  # noqa: E731
    assert cells(with_analysis) == cells(TINY_SWEEP)
    assert dynamics.analysis_settings(with_analysis) == {"fit_num_tasks": (2, 8)}
