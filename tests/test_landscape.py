"""The loss landscape between trained models (final parameters: icl_regression.trained, tested in
tests/test_estimator_analyses.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from icl_regression import landscape, names, plotting_experiments, trained, training_experiments
from icl_regression.config import run_config_from_dict
from icl_regression.store import RunStore

SETTINGS = landscape.LandscapeSettings(num_points=5, num_sequences=64, batch_size=64)


def _run(sweep_dir, num_tasks: str, batch: int = 16):
    return next(p for p in (sweep_dir / names.RUNS_DIR).iterdir() if p.name.startswith(f"M={num_tasks}_B={batch}_"))


def _final_params(sweep_dir, run_dir):
    """A run's final parameters, from its checkpoint (the tiny sweep keeps them)."""
    cell = next(c for c in trained.sweep_cells(sweep_dir) if c.name == run_dir.name)
    return trained.load_trained(sweep_dir, [cell], print_fn=lambda *_: None)[0].params


def _same_tree(a, b) -> bool:
    return all(bool(jnp.array_equal(x, y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_barrier_of_a_line_is_zero_and_of_a_bump_its_height():
    alphas = np.linspace(0, 1, 11)
    assert landscape.barrier(alphas, 2 - alphas)["height"] == 0.0
    bumped = 2 - alphas + 0.3 * np.sin(np.pi * alphas)
    result = landscape.barrier(alphas, bumped)
    assert result["height"] == pytest.approx(0.3) and result["alpha"] == pytest.approx(0.5)
    assert result["above_worse_end"] == pytest.approx(max(bumped) - 2)


def test_evaluation_sets_follow_the_run_task_prior():
    """A run trained on Laplace tasks is evaluated on its own pool (as the engine built it) and on fresh Laplace
    tasks for T_true, not on Gaussian ones."""
    cfgs = {prior: run_config_from_dict({"data": {"dim": 4, "context_len": 6, "num_tasks": 256, "task_prior": prior},
                                         "train": {"seed": 3}}) for prior in ("gaussian", "laplace")}
    pool, _ = landscape.pretrain_pool(cfgs["laplace"])
    np.testing.assert_array_equal(np.asarray(pool), np.asarray(trained.pool_of(cfgs["laplace"])))
    kurtosis = lambda w: float(np.mean(w**4) / np.mean(w**2) ** 2)  # noqa: E731  (Gaussian 3, Laplace 6)
    assert kurtosis(np.asarray(pool)) > 4.5 > kurtosis(np.asarray(landscape.pretrain_pool(cfgs["gaussian"])[0]))
    settings = landscape.LandscapeSettings(num_points=3, num_sequences=4096, batch_size=64)
    ys = {prior: np.asarray(landscape.sequences(cfg.data, settings, None, (0,))[1]) for prior, cfg in cfgs.items()}
    assert kurtosis(ys["laplace"][:, 0]) > kurtosis(ys["gaussian"][:, 0]) + 0.5  # y = wᵀx + noise: heavier tails


def test_interpolation_hits_both_ends():
    a, b = {"w": jnp.ones(3)}, {"w": jnp.full(3, 5.0)}
    assert _same_tree(landscape.interpolate(a, b, 0.0), a) and _same_tree(landscape.interpolate(a, b, 1.0), b)
    assert landscape.interpolate(a, b, 0.25)["w"][0] == pytest.approx(2.0)


def test_the_path_from_a_model_to_itself_is_flat(tiny_sweep_dir):
    run_dir = _run(tiny_sweep_dir, "2")
    cfg = run_config_from_dict(RunStore(run_dir).config())
    theta = _final_params(tiny_sweep_dir, run_dir)
    result = landscape.landscape_between(cfg, theta, cfg, theta, SETTINGS)
    assert set(result["loss"]) == {names.TRUE, names.PRETRAIN}
    for eval_set, losses in result["loss"].items():
        assert np.ptp(losses) < 1e-6 * max(losses)
        assert result["barrier"][eval_set]["height"] == pytest.approx(0.0, abs=1e-6)
    assert result["distance"]["l2"] == 0.0 and result["delta_a_b_true"] == 0.0


def test_models_of_other_settings_cannot_share_a_path(tiny_sweep_dir, tiny_config):
    cfg = run_config_from_dict(RunStore(_run(tiny_sweep_dir, "2")).config())
    theta = _final_params(tiny_sweep_dir, _run(tiny_sweep_dir, "2"))
    with pytest.raises(ValueError, match="share the model"):
        landscape.landscape_between(cfg, theta, cfg.replace(data={"dim": 3}), theta, SETTINGS)


def test_sweep_landscape_pairs_every_finite_model_with_the_infinite_one(tiny_sweep_dir, tmp_path):
    analysis = landscape.run_landscape(tiny_sweep_dir, {"budget": (16, 60), "num_points": 5, "num_sequences": 64,
                                                        "batch_size": 64}, None, print_fn=lambda *_: None)
    pairs = analysis["pairs"]
    assert sorted(p["num_tasks"] for p in pairs) == [2, 8]  # one seed: no ∞-vs-∞ baseline
    for p in pairs:
        assert p["same_init"] and len(p["loss"][names.PRETRAIN]) == 5 and p["distance"]["l2"] > 0
        assert p["barrier"][names.TRUE]["height"] >= 0
        # The ends of the path are the two models themselves: their T_true losses differ, as the models do.
        assert p["loss"][names.TRUE][0] != p["loss"][names.TRUE][-1]
    stored = training_experiments.read_analysis(tiny_sweep_dir, "landscape")
    assert stored["budget"] == [16, 60] and len(stored["summary"]) == 2
    assert "barrier" in landscape.format_landscape(analysis)
    paths = plotting_experiments.write_experiment_figures("landscape", tiny_sweep_dir, tmp_path)
    assert {p.name for p in paths} == {"landscape.png", "landscape.pdf"}


@pytest.mark.parametrize("change, said", [
    ({"budget": (16,)}, r"landscape\.budget=\(16,\); allowed: two integers >= 1 \(batch size, steps\)"),
    ({"budget": ("abc", "def")}, r"landscape\.budget=\('abc', 'def'\); allowed: two integers"),
    ({"finite_seeds": (99,)}, r"landscape\.finite_seeds=\[99\] matches no finished finite-M run .* at B=16, N=60 "
                              r".*; allowed: values among \[0\]"),
    ({"num_tasks": (-3,)}, r"landscape\.num_tasks=\[-3\] matches no .*; allowed: values among \[2, 8\]"),
], ids=["one number", "not numbers", "seed filter", "M filter"])
def test_a_bad_budget_or_a_filter_that_matches_nothing_is_named(tiny_sweep_dir, change, said):
    section = {"budget": (16, 60), "num_points": 5, "num_sequences": 64, "batch_size": 64, **change}
    with pytest.raises(ValueError, match=said):
        landscape.run_landscape(tiny_sweep_dir, section, None, print_fn=lambda *_: None)


def test_sweep_pairs_include_the_baseline_and_mark_shared_initialisation():
    runs = [{"name": f"{m}-{s}", "num_tasks": m, "seed": s, "batch_size": 8, "steps": 10, "status": names.DONE}
            for m in (4, 0) for s in (0, 1, 2)]
    pairs = landscape.sweep_pairs(runs, (8, 10))
    finite = [p for p in pairs if p["kind"] == "finite_vs_infinite"]
    baseline = [p for p in pairs if p["kind"] == "infinite_vs_infinite"]
    assert len(finite) == 9 and sum(p["same_init"] for p in finite) == 3 and len(baseline) == 3


def test_landscape_loss_is_per_task_dimension_not_per_position():
    """The path's loss is L/D (D = xs.shape[-1]) as every other metric; with K != D dividing by K is wrong."""
    from types import SimpleNamespace

    model = SimpleNamespace(apply=lambda params, xs, ys: jnp.zeros_like(ys) + params["b"])
    path_loss = landscape.make_path_loss(model, batch_size=4)
    xs, ys = jnp.ones((8, 6, 3)), jnp.arange(48.0).reshape(8, 6) / 10   # N=8, K=6, D=3
    losses, _ = path_loss({"b": jnp.zeros(())}, {"b": jnp.zeros(())}, jnp.array([0.0, 1.0]), xs, ys)
    np.testing.assert_allclose(np.asarray(losses), np.mean(np.square(np.asarray(ys))) / 3, rtol=1e-6)


def test_relative_parameter_distance_is_over_the_mean_norm():
    """relative = ‖θ_a − θ_b‖ / mean(‖θ_a‖, ‖θ_b‖), symmetric in the two models."""
    a, b = {"w": jnp.array([3.0, 4.0])}, {"w": jnp.array([0.0, 0.0])}
    assert landscape.parameter_distance(a, b)["relative"] == pytest.approx(2.0)
    assert landscape.parameter_distance(b, a)["relative"] == pytest.approx(2.0)
