"""The precision check trains one group on two compute paths and compares the final Δ with the seed spread."""

import math
import subprocess
import sys

import numpy as np
import pytest

from icl_regression import names, precision
from icl_regression.config import run_config_from_dict

from conftest import REPO_ROOT, TINY_SWEEP

# The tiny sweep's model and data, 40 steps, no bootstrap (one evaluator to compile per path).
BASE = run_config_from_dict({k: v for k, v in TINY_SWEEP.items() if k != "sweep"}).replace(
    train={"steps": 40}, eval={"num_bootstrap": 0}, checkpoint={"interval": 40})


def test_precision_check_compares_both_paths_per_task_count_and_metric(tmp_path):
    spec = precision.PrecisionSpec(BASE, num_tasks=(2, 0), seeds=(0, 1, 2), fast_path="bfloat16")
    saved = []  # what a run cut off after the float32 half keeps
    record = precision.run_precision_check(spec, tmp_path, save=lambda r: saved.append(dict(r)))
    [partial] = saved
    assert not partial["complete"] and "rows" not in partial and record["complete"]
    assert {(f["num_tasks"], f["seed"]) for f in partial["float32_finals"]} == {
        (m, seed) for m in (2, 0) for seed in (0, 1, 2)}
    assert partial["timestamp"] == record["timestamp"]  # the same file name: the complete record replaces it
    assert {(r["num_tasks"], r["metric"]) for r in record["rows"]} == {
        (m, metric) for m in (2, 0) for metric in precision.METRICS}
    assert record["statuses"] == {"float32": [names.DONE], "bfloat16": [names.DONE]}
    for row in record["rows"]:
        assert len(row["float32"]) == len(row["fast"]) == 3
        assert all(math.isfinite(v) for v in row["float32"] + row["fast"])
        assert row["difference"] == pytest.approx(np.mean(row["fast"]) - np.mean(row["float32"]))
        assert row["status"] == precision.WITHIN
        assert row["seed_spread"] == pytest.approx(np.std(row["float32"], ddof=1))
        # Same seed, same data: the paths differ by rounding only, far less than two seeds differ.
        assert row["paired_max_abs_difference"] < row["seed_spread"]
    assert record["within_seed_spread"] and record["verdict"] == "within the seed spread"
    assert record["max_ratio"] < 1 and record["fast_model"]["compute_dtype"] == "bfloat16"
    run_names = {p.name for path in ("float32", "bfloat16") for p in (tmp_path / path).iterdir()}
    assert len(run_names) == 12  # six models per path, each path's runs named apart
    assert "M=     2" in precision.format_table(record)

    again = precision.run_precision_check(spec, tmp_path)  # finished runs are read, not retrained
    assert again["rows"] == record["rows"] and again["wall_s"]["float32"] < record["wall_s"]["float32"]


def test_precision_check_needs_two_seeds_two_task_counts_and_another_path():
    with pytest.raises(ValueError, match="at least two distinct seeds"):
        precision.PrecisionSpec(BASE, num_tasks=(2, 0), seeds=(0,), fast_path="bfloat16")
    with pytest.raises(ValueError, match="reference path"):
        precision.PrecisionSpec(BASE, num_tasks=(2, 0), seeds=(0, 1), fast_path="float32")
    for num_tasks in ((4, 4), (4,), ()):  # a repeated M crashed in training; none wrote an empty record
        with pytest.raises(ValueError, match="at least two distinct M"):
            precision.PrecisionSpec(BASE, num_tasks=num_tasks, seeds=(0, 1), fast_path="bfloat16")


def _summaries(spec, float32, fast):
    """Stored-summary stand-ins: {path: [summary per (M, seed)]} with every metric set to the given value."""
    def summary(m, seed, value):
        return {"num_tasks": m, "seed": seed, "status": names.DONE, "final": dict.fromkeys(precision.METRICS, value)}
    return {path: [summary(m, seed, values[(m, seed)]) for m in spec.num_tasks for seed in spec.seeds]
            for path, values in (("float32", float32), (spec.fast_path, fast))}


@pytest.mark.parametrize("seeds, shift, noise, verdict", [
    ((0, 1, 2, 3), 0.0, 0.01, "within the seed spread"),  # rounding noise only
    ((0, 1), 0.0, 0.01, "inconclusive: more seeds"),  # one degree of freedom: never 'within'
    ((0, 1, 2, 3), 5.0, 0.01, "changes the science"),  # a shift five spreads wide, the same for every seed
    ((0, 1, 2, 3), 0.9, 0.5, "inconclusive: more seeds"),  # a shift about one spread, measured noisily
])
def test_the_verdict_reads_paired_differences_against_the_seed_spread(seeds, shift, noise, verdict):
    """Before: 'changes the science' whenever one of 20 ratios over a one-dof spread exceeded 1, which happened by
    chance to a fast path that changed nothing (two seeds that agreed closely)."""
    spec = precision.PrecisionSpec(BASE, num_tasks=(2, 0), seeds=seeds, fast_path="bfloat16")
    rng = np.random.default_rng(0)
    float32 = {(m, s): 1.0 + 0.1 * s + 0.01 * m for m in spec.num_tasks for s in seeds}  # seed spread ≈ 0.1
    spread = float(np.std([0.1 * s for s in seeds], ddof=1))
    fast = {k: v + shift * spread + noise * spread * rng.standard_normal() for k, v in float32.items()}
    assert precision.compare(spec, _summaries(spec, float32, fast))["verdict"] == verdict


def test_a_row_whose_seeds_agree_exactly_is_not_left_out():
    spec = precision.PrecisionSpec(BASE, num_tasks=(2, 0), seeds=(0, 1, 2), fast_path="bfloat16")
    same = {(m, s): 1.0 for m in spec.num_tasks for s in spec.seeds}
    moved = {(m, s): 1.0 + (0.5 if m == 2 else 0.0) for m in spec.num_tasks for s in spec.seeds}
    record = precision.compare(spec, _summaries(spec, same, moved))
    assert record["verdict"] == "changes the science" and record["max_ratio"] == math.inf


@pytest.mark.parametrize("flag, said", [("--num_layers=0", "model.num_layers=0; allowed: an integer >= 1"),
                                        ("--d_model=0", "model.d_model=0 must be a positive multiple")])
def test_a_zero_model_size_is_refused_not_replaced_by_the_default(tmp_path, flag, said):
    result = subprocess.run([sys.executable, str(REPO_ROOT / "experiments" / "precision.py"), flag,
                             f"--workdir={tmp_path / 'w'}", f"--out={tmp_path / 'o'}"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.startswith(f"precision.py: error: {said}"), result.stderr[-2000:]
    assert not (tmp_path / "w").exists()


def test_the_standard_error_is_that_of_the_mean_paired_difference():
    """std(d, ddof=1)/√S; without the √S a fast path that moves the numbers by a fraction of the spread (the same
    way over 9 seeds) would read 'unclear' instead of 'within'."""
    spec = precision.PrecisionSpec(BASE, num_tasks=(2, 0), seeds=tuple(range(9)), fast_path="bfloat16")
    rng = np.random.default_rng(0)
    float32 = {(m, s): 1.0 + 0.1 * s for m in spec.num_tasks for s in spec.seeds}  # seed spread ≈ 0.27
    fast = {k: v + 0.1 + 0.2 * rng.standard_normal() for k, v in float32.items()}
    for row in precision.compare(spec, _summaries(spec, float32, fast))["rows"]:
        paired = np.array(row["fast"]) - np.array(row["float32"])
        assert row["difference_standard_error"] == pytest.approx(paired.std(ddof=1) / 3.0)


def test_a_diverged_run_on_either_path_changes_the_science():
    """A run that diverged (its status is not done) makes the verdict 'changes the science', even if the final
    numbers it left happen to sit within the seed spread."""
    spec = precision.PrecisionSpec(BASE, num_tasks=(2, 0), seeds=(0, 1, 2, 3), fast_path="bfloat16")
    rng = np.random.default_rng(0)
    float32 = {(m, s): 1.0 + 0.1 * s for m in spec.num_tasks for s in spec.seeds}
    summaries = _summaries(spec, float32, {k: v + 1e-4 * rng.standard_normal() for k, v in float32.items()})
    assert precision.compare(spec, summaries)["verdict"] == "within the seed spread"
    summaries[spec.fast_path][0]["status"] = names.DIVERGED  # M = 2, seed 0: its last finite numbers stay
    record = precision.compare(spec, summaries)
    assert record["verdict"] == "changes the science" and not record["within_seed_spread"]
