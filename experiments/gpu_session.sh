#!/bin/bash
# First call of a GPU session for the fast-training issue (experiments/PERFORMANCE.md), from the repository root:
#
#     bash experiments/gpu_session.sh          # via the device tool: run(command=..., timeout_s=600)
#
# Needs only what the GPU machine has (jax 0.11.2 with CUDA, flax, optax, absl, numpy, pytest; no ml_collections,
# no network): nothing it runs imports ml_collections. Steps, most important first, each cut off at the session's
# deadline (570 s in all) so that a slow step never costs the ones before it:
#   1. versions and devices;
#   2. the kernel tests on the GPU itself (Triton kernels, cuDNN attention; all but the exact-float32 ones);
#   3. benchmark small (ensemble 22, batch 256): float32, fast path and the one-model reference side by side;
#   4. benchmark base (ensemble 20, batch 256), the same three;
#   5. precision check: small model, M = 32 … 16384 × seeds 0, 1, 10k steps, float32 vs fast path;
#   6. benchmark small at batch 512.
# Everything lands in $OUT: benchmarks/*.json, precision/*.json and session.log (6 files at most, all small).
# Commit them as results/benchmarks/*.json and results/precision/*.json, and fill in PERFORMANCE.md's columns.
set -u
export PYTHONPATH=.
export JAX_COMPILATION_CACHE_DIR="$PWD/.jax_cache_gpu"
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

BENCH="python experiments/benchmark.py --fast_path=fast --repeats=3 --steps_per_call=100 --dmmse_tasks=0 --out=$OUT/benchmarks"
step 30 python -c "import jax, jaxlib, flax, optax; print(jax.__version__, jaxlib.__version__, flax.__version__, optax.__version__, jax.devices())"
step 90 env JAX_PLATFORMS=cuda python -m pytest -q -k "not exact" tests/test_kernels.py
step 130 $BENCH --size=small --batch_size=256 --ensemble_size=22
step 160 $BENCH --size=base --batch_size=256 --ensemble_size=20
step 200 python experiments/precision.py --size=small --batch_size=256 --steps=10000 --fast_path=fast \
    --num_tasks=32,256,1024,4096,16384 --seeds=0,1 --workdir=/tmp/precision_runs --out="$OUT/precision"
step 130 $BENCH --size=small --batch_size=512 --ensemble_size=22
grep -E "^(==|device|model|ours|fast|reference|  model-steps/s|  speed-up|  compile|fast /|  M=|written)" "$LOG" | tail -80
