#!/usr/bin/env bash
# One command for a CUDA machine: build fastdistill._C in place (C++ + CUDA), run every CUDA test, then the GPU
# benchmarks of the fused kernels and of assign_modes/kmeans. Results (logs, JUnit XML, benchmark JSON, summaries)
# go to OUT_DIR.   Usage: benchmarks/gpu_suite.sh OUT_DIR      (from the repository root)
# Knobs: ARCH (default 9.0), SKIP_KERNELS=1, SKIP_MODES=1, BENCH_K (pytest -k filter for the kernel benchmarks).
set -uo pipefail
OUT=${1:?usage: benchmarks/gpu_suite.sh OUT_DIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
failed=0
note() { echo "== [$SECONDS s] $*" | tee -a "$OUT/suite.txt"; }

note "build fastdistill._C in place (CUDA arch ${ARCH:-9.0})"
FASTDISTILL_CUDA=1 TORCH_CUDA_ARCH_LIST=${ARCH:-9.0} MAX_JOBS=${MAX_JOBS:-16} \
  python setup.py build_ext --inplace > "$OUT/build.log" 2>&1 || { failed=1; tail -n 30 "$OUT/build.log"; }
grep "fastdistill setup" "$OUT/build.log" | tee -a "$OUT/suite.txt"
python -m fastdistill info > "$OUT/info.txt" 2>&1; tail -n 12 "$OUT/info.txt" | tee -a "$OUT/suite.txt"

note "CUDA tests (every test file, -m cuda)"
python -m pytest tests -m cuda -q -p no:cacheprovider -rs --junitxml "$OUT/cuda_tests.xml" \
  > "$OUT/cuda_tests.log" 2>&1 || failed=1
tail -n 15 "$OUT/cuda_tests.log" | tee -a "$OUT/suite.txt"

if [ "${SKIP_MODES:-0}" != 1 ]; then
  note "assign_modes / kmeans benchmarks (CUDA)"
  FASTDISTILL_BENCH_DEVICES=cuda python -m pytest benchmarks/bench_modes.py -p no:cacheprovider --benchmark-enable \
    --benchmark-json "$OUT/bench_modes.json" --benchmark-columns=median,iqr,rounds > "$OUT/bench_modes.log" 2>&1 \
    || failed=1
  tail -n 40 "$OUT/bench_modes.log" >> "$OUT/suite.txt"
fi
if [ "${SKIP_KERNELS:-0}" != 1 ]; then
  note "fused-kernel suite (benchmarks/gpu_kernels.sh)"
  bash benchmarks/gpu_kernels.sh "$OUT/kernels" ${BENCH_K:+-k "$BENCH_K"} > "$OUT/kernels.log" 2>&1 || failed=1
  tail -n 60 "$OUT/kernels.log" >> "$OUT/suite.txt"
fi
note "done (failed=$failed)"
exit $failed
