"""A benchmark's measured rates are set against the roofline prediction of the same program, scaled by the card's
measured copy rate; a prediction of other shapes, another path or unbatched models is never matched."""

import copy
import subprocess
import sys

import pytest

from icl_regression import roofline, store

from conftest import REPO_ROOT

PREDICTIONS = REPO_ROOT / "results" / "roofline"


def _benchmark_record(prediction: dict, copy_rate: float | None, measured: float, strategy: str = "vmap") -> dict:
    """A benchmark record of the program `prediction` is of (its config, batch and ensemble), on the float32 path
    with `measured` model-steps/s, and one bfloat16 fast path that no roofline record here has at batch 7."""
    config = copy.deepcopy(prediction["config"])
    figures = {"path": prediction["path"], "strategy": strategy, "num_members": prediction["ensemble_size"],
               "model": dict(config["model"]), "model_steps_per_s": measured}
    other = {**figures, "path": "bfloat16", "model": {**config["model"], "compute_dtype": "bfloat16", "num_layers": 7}}
    return {"config": config, "train": figures, "fast": [other],
            "copy": None if copy_rate is None else {"bytes_per_s": copy_rate}}


def test_measured_rates_meet_the_prediction_of_the_same_program_scaled_by_the_copy_rate():
    predictions = [store.read_json(p) for p in sorted(PREDICTIONS.glob("*.json"))]
    [prediction] = [p for p in predictions if p["path"] == "float32" and p["ensemble_size"] == 22
                    and p["batch_size"] == 256]
    record = _benchmark_record(prediction, copy_rate=1.5 * prediction["bandwidth"], measured=1_000.0)

    [row] = roofline.measured_against_predicted(record, predictions)  # the bfloat16 L7 path has no prediction
    assert row["path"] == "float32" and row["predicted"] == prediction["predicted_model_steps_per_s"]
    assert row["copy_scale"] == pytest.approx(1.5)
    assert row["predicted_here"] == pytest.approx(1.5 * prediction["predicted_model_steps_per_s"])
    assert row["measured_over_predicted_here"] == pytest.approx(1_000.0 / row["predicted_here"])
    text = roofline.format_comparison([row])
    assert f"{row['predicted']:,.0f} → {row['predicted_here']:,.0f} (× 1.5) here, measured 1,000" in text

    no_copy = roofline.measured_against_predicted(_benchmark_record(prediction, None, 1_000.0), predictions)
    assert no_copy[0]["predicted_here"] is None and "n/a here" in roofline.format_comparison(no_copy)


@pytest.mark.parametrize("change", ["batch", "ensemble", "dim", "path", "strategy"])
def test_a_prediction_of_another_program_is_not_matched(change):
    prediction = store.read_json(PREDICTIONS / "small_B256_E22_float32.json")
    record = _benchmark_record(prediction, 3e12, 1_000.0, strategy="map" if change == "strategy" else "vmap")
    if change == "batch":
        record["config"]["train"]["batch_size"] = 512
    elif change == "ensemble":
        record["train"]["num_members"] = 20
    elif change == "dim":
        record["config"]["data"]["dim"] = 4
    elif change == "path":
        record["train"]["model"]["mlp"] = "fused"
    assert roofline.measured_against_predicted(record, [prediction]) == []
    assert "no prediction of these shapes" in roofline.format_comparison([])


def test_benchmark_refuses_a_missing_predictions_folder_before_timing(tmp_path):
    result = subprocess.run([sys.executable, str(REPO_ROOT / "experiments" / "benchmark.py"),
                             f"--predictions={tmp_path / 'none'}", f"--out={tmp_path}"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and f"--predictions={tmp_path / 'none'} is not a folder" in result.stderr
    assert not list(tmp_path.glob("*.json"))


def test_benchmark_reads_only_roofline_records_from_the_predictions_folder(tmp_path):
    """Before, any other JSON there failed the comparison after all the timing, before anything was written."""
    folder = tmp_path / "predictions"
    folder.mkdir()
    for source in sorted(PREDICTIONS.glob("*.json"))[:2]:
        (folder / source.name).write_text(source.read_text())
    (folder / "notes.json").write_text('{"note": 1}')
    result = subprocess.run([sys.executable, str(REPO_ROOT / "experiments" / "benchmark.py"), f"--predictions={folder}",
                             f"--out={tmp_path / 'out'}", "--num_layers=1", "--d_model=16", "--num_heads=2",
                             "--dim=2", "--context_len=4", "--batch_size=8", "--ensemble_size=2", "--repeats=1",
                             "--steps_per_call=2", "--dmmse_tasks=0", "--fast_path=none"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(list((tmp_path / "out").glob("*.json"))) == 1


def _roofline(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO_ROOT / "experiments" / "roofline.py"), *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)


def test_record_names_say_the_task_shape_when_it_is_not_the_default():
    from icl_regression.config import RunConfig

    base = RunConfig().replace(model={"num_layers": 12, "d_model": 256, "num_heads": 4}, train={"batch_size": 256})
    assert roofline.record_name("large", base, 15) == "large_B256_E15_float32"
    wide = base.replace(data={"dim": 32, "context_len": 64})
    assert roofline.record_name("large", wide, 15) == "large_D32_K64_B256_E15_float32"


def test_roofline_refuses_bad_input_before_compiling(tmp_path):
    (tmp_path / "empty").mkdir()
    for args, said in (([f"--target={tmp_path / 'none.txtpb'}"], f"--target={tmp_path / 'none.txtpb'}: no such file"),
                       (["--ensemble_size=0"], "--ensemble_size=0; allowed: an integer >= 1"),
                       (["--steps_per_call=1"], "--steps_per_call=1; allowed: an integer >= 2"),
                       (["--dim=0"], "--dim=0; allowed: an integer >= 1"),
                       (["--context_len=1"], "--context_len=1; allowed: an integer >= 2"),
                       (["--table", f"--out={tmp_path / 'none'}"], f"--out={tmp_path / 'none'} does not exist"),
                       (["--table", f"--out={tmp_path / 'empty'}"], "holds no roofline records"),
                       (["--paths=bfloat16+cudnn"], "--paths: bfloat16+cudnn: cuDNN attention does not compile "
                                                    "without a GPU")):
        result = _roofline(*args)
        assert result.returncode == 2 and result.stderr.count("\n") == 1, (args, result.stderr[-2000:])
        assert result.stderr.startswith("roofline.py: error: ") and said in result.stderr, result.stderr
    table = _roofline("--table", f"--out={PREDICTIONS}")
    assert table.returncode == 0 and table.stdout.startswith("| path |"), table.stderr[-2000:]
    header = table.stdout.splitlines()[0]  # one column per task shape: D = 8, 16, 32 of the large model apart
    assert all(f"L12 d256{shape} B256 E15:" in header for shape in ("", " D16 K32", " D32 K64")), header


def test_roofline_without_the_cuda_plugin_says_what_to_install(tmp_path):
    target = REPO_ROOT.parent / "shared" / "tools" / "h100_roofline" / "target_h100.txtpb"
    if not target.is_file():
        pytest.skip(f"no H100 target description at {target}")
    try:
        roofline.abstract_device(target)
        pytest.skip("this machine compiles for CUDA: nothing to refuse")
    except RuntimeError:
        pass
    result = _roofline("--size=small", f"--target={target}", f"--out={tmp_path}")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr[-2000:]
    assert "install the CUDA plugin" in result.stderr and not list(tmp_path.iterdir())
