#!/usr/bin/env bash
# GPU suite for the fused kernels (bn_stat_loss, StatBatchNorm2d, subtask_adam_step, recover iteration).
#
#   benchmarks/gpu_kernels.sh OUT_DIR [PYTEST_ARGS...]   # on a CUDA machine, from anywhere; nothing to build (Triton JIT)
#
# PYTEST_ARGS go to the benchmark runs only, e.g. -k "r18c32 or 1x100" to run a subset.
#
# Writes into OUT_DIR:
#   env.txt                   GPU, driver, Python / torch / triton versions, git commit
#   cuda_tests.log/.xml       pytest -m cuda on the kernel test files (GPU vs reference, bf16, channels_last)
#   interpret_tests.log       the same files under TRITON_INTERPRET=1 -m interpret (CPU), as CI runs them
#   copy_bandwidth.json       device-to-device copy GB/s (read + write), the bandwidth yardstick
#   bench_<name>.json/.log    pytest-benchmark results: fused vs reference on the same inputs in the same run
#   summary.md                per-call medians, speedups, GB/s and % of copy bandwidth (benchmarks/summarize.py)
# Every step runs even if an earlier one fails; the exit status is non-zero if any step failed (see summary.txt).
# PYTHON selects the interpreter (default: python).
set -uo pipefail

OUT=${1:?usage: benchmarks/gpu_kernels.sh OUT_DIR [PYTEST_ARGS...]}
shift
BENCH_ARGS=("$@")
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
unset FASTDISTILL_BACKEND TRITON_INTERPRET FASTDISTILL_BENCH_DEVICE
TESTS=(tests/test_bn_stat_loss.py tests/test_stat_batchnorm.py tests/test_subtask_adam.py)
failed=0
: > "$OUT/summary.txt"

step() {  # step NAME LOGFILE COMMAND...: run, log, record the status
  local name=$1 logfile=$2
  shift 2
  local t0=$SECONDS
  echo "== $name ..."
  "$@" > "$logfile" 2>&1
  local rc=$?
  local line="$name: $([ $rc -eq 0 ] && echo ok || echo "FAILED (exit $rc)") in $((SECONDS - t0))s -> $(basename "$logfile")"
  echo "$line" | tee -a "$OUT/summary.txt"
  [ $rc -eq 0 ] || { failed=1; tail -n 15 "$logfile"; }
}

{
  date -u
  git rev-parse HEAD 2>/dev/null
  nvidia-smi 2>&1
  $PY - <<'PY'
import sys, torch
print("python", sys.version.split()[0], "| torch", torch.__version__, "| cuda", torch.version.cuda)
try:
    import triton
    print("triton", triton.__version__)
except ImportError:
    print("triton: NOT INSTALLED")
print("cuda available:", torch.cuda.is_available(), "|", torch.cuda.get_device_name() if torch.cuda.is_available() else "")
PY
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt" | tail -n 3
if ! $PY -c "import torch, triton, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "no CUDA device or no triton: this script is for a GPU machine (see $OUT/env.txt)" | tee -a "$OUT/summary.txt"
  exit 2
fi

step "CUDA tests" "$OUT/cuda_tests.log" \
  $PY -m pytest -m cuda -p no:cacheprovider -rs --junitxml "$OUT/cuda_tests.xml" "${TESTS[@]}"
step "interpreter tests (CPU)" "$OUT/interpret_tests.log" \
  env TRITON_INTERPRET=1 $PY -m pytest -m interpret -p no:cacheprovider -rs "${TESTS[@]}"
step "copy bandwidth" "$OUT/copy_bandwidth.log" \
  $PY benchmarks/copy_bandwidth.py --gib 2 --out "$OUT/copy_bandwidth.json"
for name in bn_stat_loss subtask_adam recover_iteration; do
  rm -f "$OUT/bench_$name.json"
  step "benchmark $name" "$OUT/bench_$name.log" \
    $PY -m pytest "benchmarks/bench_$name.py" -p no:cacheprovider --benchmark-enable \
      --benchmark-json "$OUT/bench_$name.json" --benchmark-columns=median,iqr,rounds "${BENCH_ARGS[@]}"
done

copy_gbps=$($PY -c "import json; print(json.load(open('$OUT/copy_bandwidth.json'))['best_gbps'])" 2>/dev/null)
jsons=()
for f in "$OUT"/bench_*.json; do [ -s "$f" ] && jsons+=("$f"); done
if [ ${#jsons[@]} -gt 0 ]; then
  step "summary" "$OUT/summary.md" $PY benchmarks/summarize.py "${jsons[@]}" ${copy_gbps:+--copy-gbps "$copy_gbps"}
  cat "$OUT/summary.md"
fi
echo "copy bandwidth: ${copy_gbps:-unknown} GB/s" | tee -a "$OUT/summary.txt"
echo "results in $OUT"
exit $failed
