#!/usr/bin/env bash
# assign_modes / kmeans on a CUDA machine: build fastdistill._C in place with its CUDA kernels, run the assign_modes and
# kmeans tests (the CUDA ones and, with the CUDA build, the CPU ones), then benchmarks/bench_modes.py on the GPU.
#
#   benchmarks/gpu_modes.sh OUT_DIR [PYTEST_ARGS...]     # from anywhere; PYTEST_ARGS go to the benchmark run only,
#                                                        # e.g. -k "assign and D4096" for a subset
# Knobs: ARCH (TORCH_CUDA_ARCH_LIST, default 9.0), MAX_JOBS (default 16), PYTHON (default python),
#        BENCH_DEVICES (default cuda; "cpu,cuda" adds the CPU benchmarks, slow: scikit-learn runs class by class).
#
# Writes into OUT_DIR:
#   env.txt                  date, git commit, nvidia-smi, Python / torch / CUDA versions
#   build.log                the in-place build (its "[fastdistill setup]" line says whether CUDA sources were built)
#   info.txt                 python -m fastdistill info (assign_modes / kmeans must say "CUDA (fastdistill._C)")
#   cuda_tests.log/.xml      pytest -m cuda on tests/test_assign_modes.py tests/test_kmeans.py (JUnit XML)
#   tests.log/.xml           the same two files without the marker filter (CPU + CUDA, with the CUDA build loaded)
#   bench_modes.json/.log    pytest-benchmark: assign_modes vs per-class loop and batched cdist, kmeans (inertia in
#                            extra_info)
#   summary.md               per-call medians, speedups vs the per-class loop and vs batched cdist, kmeans inertia
#   summary.txt              one line per step: ok / FAILED
# Every step runs even if an earlier one fails (except after a failed build); the exit status is non-zero if any did.
set -uo pipefail

OUT=${1:?usage: benchmarks/gpu_modes.sh OUT_DIR [PYTEST_ARGS...]}
shift
BENCH_ARGS=("$@")
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
unset FASTDISTILL_BACKEND FASTDISTILL_CPU_ISA TRITON_INTERPRET
TESTS=(tests/test_assign_modes.py tests/test_kmeans.py)
failed=0
: > "$OUT/summary.txt"

. benchmarks/gpu_step.sh  # step()

{
  date -u
  git rev-parse HEAD 2>/dev/null
  nvidia-smi 2>&1
  $PY -c "import sys, torch; print('python', sys.version.split()[0], '| torch', torch.__version__, '| cuda',
torch.version.cuda, '|', torch.cuda.get_device_name() if torch.cuda.is_available() else 'NO CUDA DEVICE')"
  nvcc --version 2>&1 | tail -n 2
} > "$OUT/env.txt" 2>&1
tail -n 3 "$OUT/env.txt"
if ! $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "no CUDA device: this script is for a GPU machine (see $OUT/env.txt)" | tee -a "$OUT/summary.txt"
  exit 2
fi

if ! step "build (FASTDISTILL_CUDA=1, TORCH_CUDA_ARCH_LIST=${ARCH:-9.0})" "$OUT/build.log" \
    env FASTDISTILL_CUDA=1 TORCH_CUDA_ARCH_LIST="${ARCH:-9.0}" MAX_JOBS="${MAX_JOBS:-16}" \
    $PY setup.py build_ext --inplace; then
  echo "build failed: nothing else to run" | tee -a "$OUT/summary.txt"
  exit 1
fi
grep "fastdistill setup" "$OUT/build.log" | tee -a "$OUT/summary.txt"
step "fastdistill info" "$OUT/info.txt" $PY -m fastdistill info
grep -E "extension|assign_modes|kmeans" "$OUT/info.txt" | tee -a "$OUT/summary.txt"

step "CUDA tests" "$OUT/cuda_tests.log" \
  $PY -m pytest -m cuda -p no:cacheprovider -rs --junitxml "$OUT/cuda_tests.xml" "${TESTS[@]}"
step "all tests of the two files" "$OUT/tests.log" \
  $PY -m pytest -p no:cacheprovider -rs --junitxml "$OUT/tests.xml" "${TESTS[@]}"

rm -f "$OUT/bench_modes.json"
step "benchmarks (${BENCH_DEVICES:-cuda})" "$OUT/bench_modes.log" \
  env FASTDISTILL_BENCH_DEVICES="${BENCH_DEVICES:-cuda}" $PY -m pytest benchmarks/bench_modes.py -p no:cacheprovider \
    --benchmark-enable --benchmark-json "$OUT/bench_modes.json" --benchmark-columns=median,iqr,rounds \
    "${BENCH_ARGS[@]}"

if [ -s "$OUT/bench_modes.json" ]; then
  step "summary" "$OUT/summary.md" $PY - "$OUT/bench_modes.json" <<'PY'
import json, sys
from collections import defaultdict

groups, devices = defaultdict(dict), set()
for bench in json.load(open(sys.argv[1]))["benchmarks"]:
    info = bench["extra_info"]
    groups[bench["group"]][info["provider"]] = (bench["stats"]["median"], info)
    devices.add(info["device"])
print(f"devices: {', '.join(sorted(devices))}\n")
print("| group | provider | median | vs per-class loop | vs batched cdist | inertia |")
print("|---|---|---|---|---|---|")
for group in sorted(groups):
    rows = groups[group]
    loop, cdist = rows.get("reference", (None,))[0], rows.get("cdist-batched", (None,))[0]
    for name, (median, info) in sorted(rows.items()):
        when = f"{median * 1e3:.2f} ms"
        a = f"{loop / median:.2f}x" if loop and name != "reference" else ""
        b = f"{cdist / median:.2f}x" if cdist and name.startswith("fastdistill") else ""
        inertia = f"{info['inertia']:.6g}" if "inertia" in info else ""
        print(f"| {group} | {name} | {when} | {a} | {b} | {inertia} |")
PY
  cat "$OUT/summary.md"
fi
echo "results in $OUT (failed=$failed)"
exit $failed
