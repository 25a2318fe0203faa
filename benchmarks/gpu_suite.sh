#!/usr/bin/env bash
# One command for a CUDA machine: build fastdistill._C in place (C++ + CUDA), run every CUDA test, then the GPU
# benchmarks of the fused kernels and of assign_modes/kmeans, and a whole DELT job at 32 and 224 px (fastdistill vs
# the reference-semantics loop, fp32 and bf16, image-iterations/s; benchmarks/delt_job.py). Results (logs, JUnit XML,
# benchmark JSON, summaries) go to OUT_DIR.   Usage: benchmarks/gpu_suite.sh OUT_DIR      (from the repository root)
# Knobs: ARCH (default 9.0), SKIP_KERNELS=1, SKIP_MODES=1, SKIP_DELT_JOB=1, BENCH_K (pytest -k filter for the kernel
# benchmarks), DELT_JOB_ARGS (extra arguments of delt_job.py, e.g. "--sizes 32"), SMOKE=1 (a dry run on the CPU:
# no build, no kernel or mode benchmarks, the CUDA tests skip, the DELT job with tiny shapes).
set -uo pipefail
OUT=${1:?usage: benchmarks/gpu_suite.sh OUT_DIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
failed=0
note() { echo "== [$SECONDS s] $*" | tee -a "$OUT/suite.txt"; }
if [ "${SMOKE:-0}" = 1 ]; then
  SKIP_MODES=1 SKIP_KERNELS=1
  DELT_JOB_ARGS="--smoke --device cpu ${DELT_JOB_ARGS:-}"
  note "SMOKE=1: CPU dry run (no build; kernel and mode benchmarks skipped; tiny DELT job)"
else
  note "build fastdistill._C in place (CUDA arch ${ARCH:-9.0})"
  FASTDISTILL_CUDA=1 TORCH_CUDA_ARCH_LIST=${ARCH:-9.0} MAX_JOBS=${MAX_JOBS:-16} \
    python setup.py build_ext --inplace > "$OUT/build.log" 2>&1 || { failed=1; tail -n 30 "$OUT/build.log"; }
  grep "fastdistill setup" "$OUT/build.log" | tee -a "$OUT/suite.txt"
fi
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
if [ "${SKIP_DELT_JOB:-0}" != 1 ]; then
  note "whole DELT job: fastdistill vs the reference loop, fp32 and bf16 (benchmarks/delt_job.py)"
  # shellcheck disable=SC2086  # DELT_JOB_ARGS is a list of arguments
  python benchmarks/delt_job.py --out "$OUT/delt_job.json" ${DELT_JOB_ARGS:-} > "$OUT/delt_job.log" 2>&1 || failed=1
  tail -n 20 "$OUT/delt_job.log" | tee -a "$OUT/suite.txt"
fi
note "done (failed=$failed)"
exit $failed
