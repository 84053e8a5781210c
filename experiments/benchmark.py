"""Times whole training steps of an ensemble on the float32 path the sweeps use and on a fast path, side by side
with the paper's one-model-per-program recipe in the same process, plus evaluation and dMMSE, and writes the
figures to results/benchmarks/<device>_<size>_<timestamp>.json. No rate includes compilation (timed apart).

    python experiments/benchmark.py --size=small                   # CPU: ~3-6 min on 2 cores
    python experiments/benchmark.py --size=base --ensemble_size=20 --dmmse_tasks=0   # GPU: float32 and "fast"
    python experiments/benchmark.py --num_layers=2 --d_model=32 --num_heads=2 --ensemble_size=2

Unset flags take backend defaults (icl_regression.benchmarking.BACKEND_DEFAULTS): on GPU 20 models, fast path
"fast" (bfloat16 + fused attention, MLP and LayerNorm kernels), 100 steps per call, dMMSE with 2^20 tasks
× 2^16 sequences; on CPU 4 models, fast path "bfloat16" (the Pallas kernels would run in interpret mode there),
5 steps per call, 2^14 × 2^10. `--fast_path` takes ModelConfig.fast_path labels ("bfloat16+fused_mlp", …,
comma-separated: each is timed side by side) or "none". What it should show: the speed-up of one compiled program
for many models over one program per model grows with the accelerator's width (DEVICE.md: 361 steps/s for the
paper's code on an H100); on CPU, where there is no width to fill, it stays small. experiments/PERFORMANCE.md has
the predicted and measured GPU figures.
"""

from pathlib import Path

from absl import flags

from icl_regression import benchmarking, cli, roofline, store
from icl_regression.config import (ENSEMBLE_STRATEGIES, MODEL_SIZES, RunConfig, fast_path_overrides,
                                   model_size)

_SIZE = flags.DEFINE_enum("size", "base", list(MODEL_SIZES), "Model size of the study.")
_NUM_LAYERS = flags.DEFINE_integer("num_layers", None, "Overrides the size's depth.")
_D_MODEL = flags.DEFINE_integer("d_model", None, "Overrides the size's width.")
_NUM_HEADS = flags.DEFINE_integer("num_heads", None, "Overrides the size's number of heads.")
_DIM = flags.DEFINE_integer("dim", 8, "Task dimension D.")
_CONTEXT_LEN = flags.DEFINE_integer("context_len", 16, "Pairs per sequence K.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 256, "Sequences per model per step.")
_ENSEMBLE_SIZE = flags.DEFINE_integer("ensemble_size", None, "Models per compiled program (default: 20 GPU, 4 CPU).")
_FAST_PATHS = flags.DEFINE_list("fast_path", None, "Compute paths timed beside float32: ModelConfig.fast_path "
                                 "labels, 'fast', or 'none' (default: 'fast' on GPU, 'bfloat16' on CPU).")
_STEPS_PER_CALL = flags.DEFINE_integer("steps_per_call", None, "Training steps per compiled call.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed repeats after warm-up (the median is reported).")
_STRATEGY = flags.DEFINE_enum("strategy", "auto", list(ENSEMBLE_STRATEGIES), "How models share a program.")
_EVAL = flags.DEFINE_bool("eval", False, "Also time one full group evaluation at the default eval settings.")
_DMMSE_TASKS = flags.DEFINE_integer("dmmse_tasks", None, "Pool size M for the dMMSE timing (0: skip it).")
_DMMSE_SEQUENCES = flags.DEFINE_integer("dmmse_sequences", None, "Sequences for the dMMSE timing.")
_OUT = flags.DEFINE_string("out", "results/benchmarks", "Folder that receives the JSON record.")
_PREDICTIONS = flags.DEFINE_string("predictions", "results/roofline", "Folder of roofline records (experiments/"
                                   "roofline.py) to set the measured rates against; '' for none.")


def _spec() -> benchmarking.BenchmarkSpec:
    for flag, minimum in ((_ENSEMBLE_SIZE, 1), (_STEPS_PER_CALL, 1), (_REPEATS, 1), (_DMMSE_TASKS, 0),
                          (_DMMSE_SEQUENCES, 1)):
        cli.at_least(flag, minimum)
    defaults = benchmarking.backend_defaults()
    pick = lambda flag, name: defaults[name] if flag.value is None else flag.value  # noqa: E731
    model = model_size(_SIZE.value)
    overrides = {"num_layers": _NUM_LAYERS.value, "d_model": _D_MODEL.value, "num_heads": _NUM_HEADS.value}
    model.update({k: v for k, v in overrides.items() if v is not None})
    size_label = _SIZE.value if all(v is None for v in overrides.values()) else (
        f"L{model['num_layers']}_d{model['d_model']}_h{model['num_heads']}")
    cfg = RunConfig().replace(
        data={"dim": _DIM.value, "context_len": _CONTEXT_LEN.value}, model=model,
        train={"batch_size": _BATCH_SIZE.value, "ensemble_strategy": _STRATEGY.value})
    if _FAST_PATHS.value == []:  # `--fast_path=` given empty: not the default, which is what None means
        raise cli.UsageError("--fast_path= is empty; allowed: ModelConfig.fast_path labels, 'fast', or 'none'")
    fast_paths = tuple(p for p in (_FAST_PATHS.value or [benchmarking.backend_defaults()["fast_path"]])
                       if p != "none")
    for label in fast_paths:
        cfg.replace(model=fast_path_overrides(label))  # a bad label fails here, before anything compiles
    return benchmarking.BenchmarkSpec(
        cfg, size_label, pick(_ENSEMBLE_SIZE, "ensemble_size"), pick(_STEPS_PER_CALL, "steps_per_call"),
        _REPEATS.value, _EVAL.value, pick(_DMMSE_TASKS, "dmmse_tasks"), pick(_DMMSE_SEQUENCES, "dmmse_sequences"),
        fast_paths)


def main():
    spec = _spec()  # a ConfigError is reported by cli.run
    out = cli.check_workdir(_OUT.value, flag="--out")
    folder = Path(_PREDICTIONS.value) if _PREDICTIONS.value else None
    if folder is not None and not folder.is_dir():  # before minutes of timing, not after
        raise cli.UsageError(f"--predictions={folder} is not a folder; allowed: a folder of roofline records "
                             "(results/roofline) or '' for none")
    # Roofline records only: any other JSON in the folder would fail the comparison after minutes of timing.
    predictions = None if folder is None else [
        r for r in (store.read_json(p) for p in sorted(folder.glob("*.json")))
        if isinstance(r, dict) and str(r.get("kind", "")).startswith("prediction")]

    def save(record: dict) -> Path:  # after every stage: a run cut off by its time limit keeps what it measured
        if predictions is not None:
            record["predictions"] = roofline.measured_against_predicted(record, predictions)
        return benchmarking.write_record(record, out)

    record = benchmarking.run_benchmark(spec, save)
    path = save(record)
    print(benchmarking.format_table(record))
    if "predictions" in record:
        print(roofline.format_comparison(record["predictions"]))
    print(f"written: {path}")


if __name__ == "__main__":
    cli.run_without_config(main)
