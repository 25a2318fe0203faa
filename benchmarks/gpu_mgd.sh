#!/usr/bin/env bash
# MGD3 on the GPU machine: install the carried diffusers wheels, run the MGD tests (CUDA test included) and the
# sampler benchmarks (tiny pixel UNet and a DiT-XL/2-sized random-init model in bf16). Results go to $1.
# Carry: .whl/ (diffusers 0.42.1 and its dependencies, `pip download` for cp312 manylinux; see
# fastdistill/pipelines/mgd/README.md). Usage: bash benchmarks/gpu_mgd.sh OUT_DIR
set -uo pipefail
OUT=${1:?usage: gpu_mgd.sh OUT_DIR}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
log() { echo "== $*" | tee -a "$OUT/summary.txt"; }

log "install diffusers from .whl (no network)"
python -m pip install -q --no-index --find-links .whl "diffusers==0.42.1" pytest pytest-benchmark >"$OUT/pip.log" 2>&1 \
  || python -m pip install -q --no-index --find-links .whl "diffusers==0.42.1" >>"$OUT/pip.log" 2>&1
python -m pip list 2>/dev/null >"$OUT/pip_list.txt"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee -a "$OUT/summary.txt"
python -c "import torch, diffusers; print('torch', torch.__version__, 'diffusers', diffusers.__version__)" \
  | tee -a "$OUT/summary.txt"

log "tests/test_mgd.py"
timeout 300 python -m pytest tests/test_mgd.py -q -p no:cacheprovider -rs 2>&1 | tail -15 | tee -a "$OUT/summary.txt"

cd benchmarks
log "tiny pixel UNet, CUDA fp32, 100 rows, 50 steps"
timeout 240 python bench_mgd_sampler.py --model tiny --json "$OUT/tiny_cuda.json" >/dev/null 2>"$OUT/tiny.err"
log "DiT-XL/2 random init, bf16, 50 steps: 100 rows batched vs 4 row by row"
timeout 400 python bench_mgd_sampler.py --model dit-xl2 --rows 100 --json "$OUT/dit_100.json" >/dev/null 2>"$OUT/dit.err"
log "DiT-XL/2, 256 rows batched"
timeout 400 python bench_mgd_sampler.py --model dit-xl2 --rows 256 --row-by-row 2 --json "$OUT/dit_256.json" \
  >/dev/null 2>>"$OUT/dit.err"
python - "$OUT" <<'PY' | tee -a "$OUT/summary.txt"
import json, pathlib, sys
for f in sorted(pathlib.Path(sys.argv[1]).glob("*.json")):
    r = json.loads(f.read_text())
    s = r["per_step_at_batched_rows"]
    print(f"{f.stem}: {r['model']} {r['device']} steps {r['steps']}: batched {r['batched']['rows']} rows "
          f"{r['batched']['images_per_s']:.2f} img/s, row-by-row {r['row_by_row']['images_per_s']:.3f} img/s, "
          f"x{r['speedup']:.1f}; per step network {1e3 * s['network_s']:.2f} ms, element-wise "
          f"{1e3 * s['elementwise_s']:.3f} ms ({100 * s['elementwise_fraction']:.2f}%)")
PY
