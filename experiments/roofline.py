"""Predicts H100 model-steps/s of whole training steps without a GPU: compiles the engine's training chunk for an
abstract H100 (../shared/tools/h100_roofline) and reads the bytes and FLOPs of every kernel of one step.

    pip install --target /tmp/cuda-plugin "jax-cuda12-plugin==$JAXV" "jax-cuda12-pjrt==$JAXV"   # compile only
    PYTHONPATH=$PWD:/tmp/cuda-plugin nice -n 10 python experiments/roofline.py --size=base --ensemble_size=20 \
        --paths=float32,bfloat16,bfloat16+pallas,bfloat16+fused_mlp,bfloat16+fused_ln,bfloat16+pallas+fused_mlp+fused_ln

Each path is a `ModelConfig.fast_path` label (float32 or bfloat16, then any of cudnn / pallas / fused_mlp /
fused_ln); cuDNN does not compile without a GPU (it falls back to XLA attention), so `pallas` (JAX's Pallas
flash attention, the same arrays in and out) stands in for it. One JSON record per path goes to
results/roofline/<size>[_D<dim>_K<context>]_B<batch>_E<ensemble>_<path>.json (D and K named when not 8 and 16).
Compiling the base model takes 1-3 minutes per path on 2 cores. `--table` prints the markdown table of the records
in --out (experiments/PERFORMANCE.md has it, and what these predictions can and cannot see). `sweep.py --dry_run`
reads these records for an H100 time of the groups they match (model, path, D, K, batch).
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

from pathlib import Path  # noqa: E402

from absl import flags  # noqa: E402

from icl_regression import cli, roofline, store  # noqa: E402
from icl_regression.config import MODEL_SIZES, RunConfig, fast_path_overrides, model_size  # noqa: E402

DEFAULT_TARGET = Path(__file__).resolve().parents[2] / "shared" / "tools" / "h100_roofline" / "target_h100.txtpb"

_SIZE = flags.DEFINE_enum("size", "base", list(MODEL_SIZES), "Model size of the study.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 256, "Sequences per model per step.")
_DIM = flags.DEFINE_integer("dim", RunConfig().data.dim, "Task dimension D (the record's name says it when not 8).")
_CONTEXT_LEN = flags.DEFINE_integer("context_len", RunConfig().data.context_len, "Context length K (named when "
                                    "not 16; the dimension experiment uses K = 2D).")
_ENSEMBLE_SIZE = flags.DEFINE_integer("ensemble_size", 20, "Models per compiled program (vmapped).")
_STEPS_PER_CALL = flags.DEFINE_integer("steps_per_call", 10, "Steps per compiled call (>= 2: the scan's loop body "
                                       "is the step that is read).")
_PATHS = flags.DEFINE_list("paths", ["float32", "bfloat16"], "Compute paths (ModelConfig.fast_path labels).")
_TARGET = flags.DEFINE_string("target", str(DEFAULT_TARGET), "XLA GPU target description of the H100.")
_OUT = flags.DEFINE_string("out", "results/roofline", "Folder for the JSON records.")
_HLO_DIR = flags.DEFINE_string("hlo_dir", None, "Also write each optimized HLO here (large; not committed).")
_TABLE = flags.DEFINE_bool("table", False, "Only print the markdown table of the records already in --out.")


def main():
    if _TABLE.value:
        out = cli.check_workdir(_OUT.value, create=False, must_exist=True, flag="--out")
        records = [r for r in (store.read_json(p) for p in sorted(out.glob("*.json")))
                   if isinstance(r, dict) and str(r.get("kind", "")).startswith("prediction")]
        if not records:
            raise cli.UsageError(f"--out={out} holds no roofline records; allowed: a folder of the JSON records this "
                                 "script writes, e.g. results/roofline")
        print(roofline.markdown_table(records))
        return
    cli.at_least(_ENSEMBLE_SIZE, 1)
    cli.at_least(_STEPS_PER_CALL, 2)
    cli.at_least(_DIM, 1)
    cli.at_least(_CONTEXT_LEN, 2)
    out = cli.check_workdir(_OUT.value, flag="--out")
    hlo_dir = cli.check_workdir(_HLO_DIR.value, flag="--hlo_dir") if _HLO_DIR.value else None
    target = Path(_TARGET.value)
    if not target.is_file():
        raise cli.UsageError(f"--target={target}: {'no such file' if not target.exists() else 'not a file'}; "
                             f"allowed: an XLA GPU target description, e.g. {DEFAULT_TARGET}")
    cfgs = {path: RunConfig().replace(model={**model_size(_SIZE.value), **fast_path_overrides(path)},
                                      train={"batch_size": _BATCH_SIZE.value},
                                      data={"dim": _DIM.value, "context_len": _CONTEXT_LEN.value})
            for path in _PATHS.value}  # a bad label fails here, before anything compiles
    cudnn = [path for path, cfg in cfgs.items() if cfg.model.attention == "cudnn"]
    if cudnn:  # compiled here it falls back to XLA attention: the record would be mislabelled
        raise cli.UsageError(f"--paths: {', '.join(cudnn)}: cuDNN attention does not compile without a GPU (it would "
                             "fall back to XLA attention under a cudnn label); allowed: 'pallas' as its stand-in, "
                             "e.g. bfloat16+pallas+fused_mlp+fused_ln")
    try:
        roofline.abstract_device(target)
    except RuntimeError as e:  # no CUDA plugin: the message says what to install
        raise cli.UsageError(str(e)) from None
    for path, cfg in cfgs.items():
        name = roofline.record_name(_SIZE.value, cfg, _ENSEMBLE_SIZE.value)
        hlo_out = hlo_dir / f"{name}.hlo" if hlo_dir else None
        record = roofline.roofline_record(cfg, _ENSEMBLE_SIZE.value, _STEPS_PER_CALL.value, target, hlo_out)
        store.write_json(out / f"{name}.json", record)
        print(roofline.format_line(name, record), flush=True)


if __name__ == "__main__":
    cli.run_without_config(main)
