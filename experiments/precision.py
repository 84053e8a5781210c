"""Trains one group of models spanning the transition on the float32 path and on a fast path, and compares the
final Δ_{PT,Ridge} and Δ_{PT,dMMSE} (both distributions, evaluated in float32) with the seed-to-seed spread;
writes results/precision/<device>_L<layers>_d<width>_B<batch>_<timestamp>.json.

    python experiments/precision.py                     # GPU: small model, 5 M × 2 seeds, 10k steps, "fast" path
    python experiments/precision.py --num_layers=1 --d_model=16 --dim=2 --context_len=4 --batch_size=16 \
        --steps=60 --num_tasks=2,inf --fast_path=bfloat16 --eval_sequences=64 --workdir=/tmp/precision  # CPU, ~1 min

On a GPU (experiments/PERFORMANCE.md): 2 × 10 small models × 10k steps at batch 256, a few minutes. What it
should show: for every M, |mean(fast) − mean(float32)| well under the float32 seed-to-seed standard deviation;
if not, the fast path changes the science and the paper's sweeps stay on float32.
"""

from absl import flags

from icl_regression import cli, precision
from icl_regression.config import MODEL_SIZES, RunConfig, model_size, parse_num_tasks

_SIZE = flags.DEFINE_enum("size", "small", list(MODEL_SIZES), "Model size of the study.")
_NUM_LAYERS = flags.DEFINE_integer("num_layers", None, "Overrides the size's depth.")
_D_MODEL = flags.DEFINE_integer("d_model", None, "Overrides the size's width.")
_DIM = flags.DEFINE_integer("dim", 8, "Task dimension D.")
_CONTEXT_LEN = flags.DEFINE_integer("context_len", 16, "Pairs per sequence K.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 256, "Sequences per model per step.")
_STEPS = flags.DEFINE_integer("steps", 10_000, "Training steps (triangle schedule over them).")
_STEPS_PER_CALL = flags.DEFINE_integer("steps_per_call", 500, "Training steps per compiled call.")
_NUM_TASKS = flags.DEFINE_list("num_tasks", ["32", "256", "1024", "4096", "16384"], "M of the group (inf = ∞).")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1"], "Seeds (at least two).")
_FAST_PATH = flags.DEFINE_string("fast_path", "fast", "ModelConfig.fast_path label compared with float32.")
_EVAL_INTERVAL = flags.DEFINE_integer("eval_interval", 2_500, "Steps between evaluations.")
_EVAL_SEQUENCES = flags.DEFINE_integer("eval_sequences", 4_096, "Evaluation sequences per distribution.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/precision", "Run folders of both paths (resumable).")
_OUT = flags.DEFINE_string("out", "results/precision", "Folder for the JSON record.")


def _spec() -> precision.PrecisionSpec:
    model = model_size(_SIZE.value)
    model.update({k: v for k, v in (("num_layers", _NUM_LAYERS.value), ("d_model", _D_MODEL.value))
                  if v is not None})
    steps = _STEPS.value
    base = RunConfig().replace(
        data={"dim": _DIM.value, "context_len": _CONTEXT_LEN.value}, model=model,
        train={"steps": steps, "batch_size": _BATCH_SIZE.value, "steps_per_call": min(_STEPS_PER_CALL.value, steps)},
        eval={"interval": _EVAL_INTERVAL.value, "num_sequences": _EVAL_SEQUENCES.value,
              "batch_size": min(1024, _EVAL_SEQUENCES.value), "num_bootstrap": 0},
        checkpoint={"interval": steps})
    return precision.PrecisionSpec(base, tuple(parse_num_tasks(m) for m in _NUM_TASKS.value),
                                   tuple(cli.int_list(_SEEDS, minimum=0) or ()), _FAST_PATH.value)


def main():
    try:
        spec = _spec()
    except ValueError as e:  # ConfigError included
        raise cli.UsageError(str(e))
    workdir, out = cli.check_workdir(_WORKDIR.value), cli.check_workdir(_OUT.value, flag="--out")
    record = precision.run_precision_check(
        spec, workdir,
        lambda path, p: print(f"{path}: step {p.step}/{p.total_steps}, {p.steps_per_second:.1f} steps/s", flush=True),
        save=lambda partial: precision.write_record(partial, out))  # the float32 half, kept if cut off
    path = precision.write_record(record, out)
    print(precision.format_table(record))
    print(f"written: {path}")


if __name__ == "__main__":
    cli.run_without_config(main)
