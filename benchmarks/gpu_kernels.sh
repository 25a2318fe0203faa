#!/usr/bin/env bash
# GPU suite for the fused kernels (bn_stat_loss, StatBatchNorm2d, subtask_adam_step, recover iteration).
#
#   benchmarks/gpu_kernels.sh OUT_DIR [PYTEST_ARGS...]   # on a CUDA machine, from anywhere; nothing to build (Triton JIT)
#
# PYTEST_ARGS go to the benchmark runs only, e.g. -k "r18c32 or 1x100" to run a subset.
#
# Writes into OUT_DIR (no subfolders):
#   report.txt                everything at a glance, also printed at the end: environment, step status, test counts
#                             and every failure with its first error lines, one line per benchmark group
#   env.txt                   GPU (nvidia-smi), Python / torch / triton / numpy versions, git commit
#   cuda_tests.log/.xml       pytest -m cuda on the kernel test files (GPU vs reference, bf16, channels_last)
#   interpret_tests.log/.xml  the same files under TRITON_INTERPRET=1 -m interpret (CPU), as CI runs them; skipped
#                             when this triton's interpreter cannot run loops with runtime bounds (triton < 3.8 with
#                             numpy >= 2.4: its tensor.__index__ calls int() on a 1-element array)
#   copy_bandwidth.json/.log  device-to-device copy GB/s (read + write), the bandwidth yardstick
#   bench_<name>.json/.log/.xml  pytest-benchmark results: fused vs reference on the same inputs in the same run
#   summary.md                per-call medians, speedups, GB/s and % of copy bandwidth (benchmarks/summarize.py)
#   summary.txt               one status line per step
# Every step runs even if an earlier one fails; the exit status is non-zero if any step failed.
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

. benchmarks/gpu_step.sh  # step()

versions() {
  $PY - <<'PY'
import sys, torch, numpy
print("python", sys.version.split()[0], "| torch", torch.__version__, "| cuda", torch.version.cuda, "| numpy",
      numpy.__version__)
try:
    import triton
    print("triton", triton.__version__)
except ImportError:
    print("triton: NOT INSTALLED")
print("cuda available:", torch.cuda.is_available(), "|", torch.cuda.get_device_name() if torch.cuda.is_available() else "")
PY
  command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader \
    | sed 's/^/gpu: /'
  echo "commit $(git rev-parse --short HEAD 2>/dev/null) $(git status --porcelain 2>/dev/null | grep -q . && echo '(+ local changes)')"
}

{ date -u; nvidia-smi 2>&1; versions; } > "$OUT/env.txt" 2>&1
versions > "$OUT/versions.tmp" 2>&1
cat "$OUT/versions.tmp"
if ! $PY -c "import torch, triton, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "no CUDA device or no triton: this script is for a GPU machine (see $OUT/env.txt)" | tee -a "$OUT/summary.txt"
  rm -f "$OUT/versions.tmp"
  exit 2
fi

step "CUDA tests" "$OUT/cuda_tests.log" \
  $PY -m pytest -m cuda -p no:cacheprovider -rfEs --junitxml "$OUT/cuda_tests.xml" "${TESTS[@]}"

probe_dir=$(mktemp -d)
cat > "$probe_dir/probe.py" <<'PY'
import os
import sys

os.environ["TRITON_INTERPRET"] = "1"
import torch
import triton
import triton.language as tl


@triton.jit
def _loop(X, n):
    for i in range(n):
        tl.store(X + i, i)


try:
    _loop[(1,)](torch.zeros(2, dtype=torch.int32), 2)
except Exception as exc:
    sys.exit(f"triton {triton.__version__}'s interpreter cannot run a loop with a runtime bound here ({exc})")
PY
if probe=$($PY "$probe_dir/probe.py" 2>&1); then
  step "interpreter tests (CPU)" "$OUT/interpret_tests.log" \
    env TRITON_INTERPRET=1 $PY -m pytest -m interpret -p no:cacheprovider -rfEs --junitxml "$OUT/interpret_tests.xml" \
      "${TESTS[@]}"
else
  echo "interpreter tests (CPU): skipped: $(echo "$probe" | tail -n 1) (CI runs them with triton 3.8)" \
    | tee -a "$OUT/summary.txt"
fi
rm -rf "$probe_dir"

step "copy bandwidth" "$OUT/copy_bandwidth.log" \
  $PY benchmarks/copy_bandwidth.py --gib 2 --out "$OUT/copy_bandwidth.json"
for name in bn_stat_loss subtask_adam recover_iteration; do
  rm -f "$OUT/bench_$name.json"
  step "benchmark $name" "$OUT/bench_$name.log" \
    $PY -m pytest "benchmarks/bench_$name.py" -p no:cacheprovider -rfE --benchmark-enable \
      --benchmark-json "$OUT/bench_$name.json" --benchmark-columns=median,iqr,rounds \
      --junitxml "$OUT/bench_$name.xml" "${BENCH_ARGS[@]}"
done

copy_gbps=$($PY -c "import json; print(json.load(open('$OUT/copy_bandwidth.json'))['best_gbps'])" 2>/dev/null)
jsons=() xmls=()
for f in "$OUT"/bench_*.json; do [ -s "$f" ] && jsons+=("$f"); done
for f in "$OUT"/cuda_tests.xml "$OUT"/interpret_tests.xml "$OUT"/bench_*.xml; do [ -s "$f" ] && xmls+=("$f"); done
if [ ${#jsons[@]} -gt 0 ]; then
  step "summary" "$OUT/summary.md" $PY benchmarks/summarize.py "${jsons[@]}" ${copy_gbps:+--copy-gbps "$copy_gbps"}
fi
{
  echo "== fused-kernel suite, $(date -u +%FT%TZ)"
  cat "$OUT/versions.tmp"
  echo "== steps"
  cat "$OUT/summary.txt"
  echo "== tests (JUnit): counts, failures with their first error lines"
  [ ${#xmls[@]} -gt 0 ] && $PY benchmarks/summarize.py --junit "${xmls[@]}"
  echo "== benchmarks: median per call (speedup vs reference, GB/s, % of a ${copy_gbps:-?} GB/s copy)"
  [ ${#jsons[@]} -gt 0 ] && $PY benchmarks/summarize.py --compact "${jsons[@]}" ${copy_gbps:+--copy-gbps "$copy_gbps"}
  echo "== exit status $failed (results in $OUT)"
} > "$OUT/report.txt" 2>&1
rm -f "$OUT/versions.tmp"
cat "$OUT/report.txt"
exit $failed
