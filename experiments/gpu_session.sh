#!/bin/bash
# First call of a GPU session for the fast-training issue (experiments/PERFORMANCE.md), from the repository root:
#
#     bash experiments/gpu_session.sh          # via the device tool: run(command=..., timeout_s=600)
#
# Needs only what the GPU machine has (jax 0.11.2 with CUDA, flax, optax, absl, numpy, pytest; no ml_collections,
# no network): nothing it runs imports ml_collections. Steps, in the order of what the issue needs most, each cut
# off at the session's deadline (570 s in all) so that a slow step never costs the ones before it:
#   1. versions and devices;
#   2. benchmark small (ensemble 22, batch 256): float32 path, fast path ("fast" = config.FAST_PATH) and the
#      one-model float32 reference side by side, compilation timed apart;
#   3. benchmark base (ensemble 20, batch 256), the same three;
#   4. precision check: small model, M = 32, 512, 4096, 16384 × seeds 0-3, 8k steps, float32 vs the fast path
#      (four seeds: with two, the seed spread rests on one degree of freedom and the verdict is inconclusive);
#   5. benchmark small at batch 512 (float32, fast, reference);
#   6. the kernel tests on the GPU itself (Triton kernels, cuDNN attention; all but the exact-float32 ones);
#   7. if time is left: small at batch 256 again with plain bfloat16 and the cuDNN variant of the fast path.
# Everything lands in $OUT: benchmarks/*.json (4), precision/*.json (1) and session.log: 6 small files.
# Commit them as results/benchmarks/*.json and results/precision/*.json, and fill in PERFORMANCE.md's columns.
# GPU_SESSION_TINY=1 runs every step on tiny models on the CPU (1 layer of width 32, D = 2, K = 4, 2 models,
# a few steps; kernel tests only collected): a check of this script end to end, tests/test_gpu_session.py.
set -u
export PYTHONPATH=.
PY="${PYTHON:-$(command -v python3 || command -v python)}"  # the machine's python (its venv names it python3)
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-$PWD/.jax_cache_gpu}"
OUT="${OUT:-/tmp/gpu_session_out}"
mkdir -p "$OUT/benchmarks" "$OUT/precision"
LOG="$OUT/session.log"
START=$(date +%s)
DEADLINE=$((START + ${GPU_SESSION_SECONDS:-570}))

step() {  # step BUDGET_S COMMAND...: runs COMMAND for at most BUDGET_S, never past the deadline
  local budget=$1; shift
  local left=$((DEADLINE - $(date +%s)))
  if [ "$left" -lt 30 ]; then echo "== skipped (deadline): $*" | tee -a "$LOG"; return; fi
  [ "$budget" -gt "$left" ] && budget=$left
  echo "== $(( $(date +%s) - START ))s: $* (budget ${budget}s)" | tee -a "$LOG"
  timeout --signal=INT --kill-after=10 "$budget" "$@" >> "$LOG" 2>&1
  echo "== exit $? at $(( $(date +%s) - START ))s" | tee -a "$LOG"
}

TINY=""; PRECISION_TINY=""; PRECISION_RUNS=/tmp/precision_runs; KERNEL_PLATFORM=cuda; KERNEL_COLLECT=""
if [ -n "${GPU_SESSION_TINY:-}" ]; then  # later flags win: these follow each step's own
  TINY="--num_layers=1 --d_model=32 --num_heads=2 --dim=2 --context_len=4 --ensemble_size=2 --repeats=1 --steps_per_call=2"
  PRECISION_TINY="--num_layers=1 --d_model=32 --dim=2 --context_len=4 --batch_size=8 --steps=4 --steps_per_call=2
    --eval_interval=2 --eval_sequences=64 --num_tasks=4,inf"
  PRECISION_RUNS="$OUT/tiny_precision_runs"; KERNEL_PLATFORM=cpu; KERNEL_COLLECT="--collect-only"
fi
BENCH="$PY experiments/benchmark.py --repeats=3 --steps_per_call=100 --dmmse_tasks=0 --out=$OUT/benchmarks"
step 30 $PY -c "import jax, jaxlib, flax, optax; print(jax.__version__, jaxlib.__version__, flax.__version__, optax.__version__, jax.devices())"
step 130 $BENCH --fast_path=fast --size=small --batch_size=256 --ensemble_size=22 $TINY
step 160 $BENCH --fast_path=fast --size=base --batch_size=256 --ensemble_size=20 $TINY
step 200 $PY experiments/precision.py --size=small --batch_size=256 --steps=8000 --eval_interval=2000 --fast_path=fast \
    --num_tasks=32,512,4096,16384 --seeds=0,1,2,3 --workdir=$PRECISION_RUNS --out="$OUT/precision" $PRECISION_TINY
step 120 $BENCH --fast_path=fast --size=small --batch_size=512 --ensemble_size=22 $TINY
step 90 env JAX_PLATFORMS=$KERNEL_PLATFORM $PY -m pytest -q -k "not exact" $KERNEL_COLLECT tests/test_kernels.py
step 150 $BENCH --fast_path=bfloat16,bfloat16+cudnn+fused_mlp+fused_ln --size=small --batch_size=256 --ensemble_size=22 $TINY
grep -E "^(==|device|model|ours|fast|reference|  model-steps/s|  speed-up|  over float32|  compile|copy rate|roofline|  predicted|  M=|written|[0-9]+ (passed|failed))" "$LOG" | tail -100
