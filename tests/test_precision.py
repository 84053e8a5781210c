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
    spec = precision.PrecisionSpec(BASE, num_tasks=(2, 0), seeds=(0, 1), fast_path="bfloat16")
    saved = []  # what a run cut off after the float32 half keeps
    record = precision.run_precision_check(spec, tmp_path, save=lambda r: saved.append(dict(r)))
    [partial] = saved
    assert not partial["complete"] and "rows" not in partial and record["complete"]
    assert {(f["num_tasks"], f["seed"]) for f in partial["float32_finals"]} == {(2, 0), (2, 1), (0, 0), (0, 1)}
    assert partial["timestamp"] == record["timestamp"]  # the same file name: the complete record replaces it
    assert {(r["num_tasks"], r["metric"]) for r in record["rows"]} == {
        (m, metric) for m in (2, 0) for metric in precision.METRICS}
    assert record["statuses"] == {"float32": [names.DONE], "bfloat16": [names.DONE]}
    for row in record["rows"]:
        assert len(row["float32"]) == len(row["fast"]) == 2
        assert all(math.isfinite(v) for v in row["float32"] + row["fast"])
        assert row["difference"] == pytest.approx(np.mean(row["fast"]) - np.mean(row["float32"]))
        assert row["seed_spread"] == pytest.approx(np.std(row["float32"], ddof=1))
        # Same seed, same data: the paths differ by rounding only, far less than two seeds differ.
        assert row["paired_max_abs_difference"] < row["seed_spread"]
    assert record["within_seed_spread"] and record["max_ratio"] < 1
    run_names = {p.name for path in ("float32", "bfloat16") for p in (tmp_path / path).iterdir()}
    assert len(run_names) == 8  # four models per path, each path's runs named apart
    assert "M=     2" in precision.format_table(record)

    again = precision.run_precision_check(spec, tmp_path)  # finished runs are read, not retrained
    assert again["rows"] == record["rows"] and again["wall_s"]["float32"] < record["wall_s"]["float32"]


def test_precision_check_needs_two_seeds_and_another_path():
    with pytest.raises(ValueError, match="at least two distinct seeds"):
        precision.PrecisionSpec(BASE, num_tasks=(2,), seeds=(0,), fast_path="bfloat16")
    with pytest.raises(ValueError, match="reference path"):
        precision.PrecisionSpec(BASE, num_tasks=(2,), seeds=(0, 1), fast_path="float32")


@pytest.mark.parametrize("flag, said", [("--num_layers=0", "model.num_layers=0; allowed: an integer >= 1"),
                                        ("--d_model=0", "model.d_model=0 must be a positive multiple")])
def test_a_zero_model_size_is_refused_not_replaced_by_the_default(tmp_path, flag, said):
    result = subprocess.run([sys.executable, str(REPO_ROOT / "experiments" / "precision.py"), flag,
                             f"--workdir={tmp_path / 'w'}", f"--out={tmp_path / 'o'}"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.startswith(f"precision.py: error: {said}"), result.stderr[-2000:]
    assert not (tmp_path / "w").exists()
