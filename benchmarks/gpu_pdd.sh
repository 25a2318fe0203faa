#!/usr/bin/env bash
# Fashion-MNIST IPC 10 (ConvNet-3, hard labels, DSA): DM, PDD+DM, MTT, PDD+MTT, each against the random real subset.
#
#   benchmarks/gpu_pdd.sh OUT_DIR [FASHION_MNIST_IDX_DIR]
#
# OUT_DIR receives one run folder per method (distilled images, config.json, results.json) and one log per step;
# summary.txt collects the result tables. The IDX folder holds train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
# t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz (default: $FMNIST, else Debian's location).
# Run from the repository root. Budgets (environment variables, defaults = the reference settings of the spec,
# except the buffer, which is smaller than MTT's 100 experts x 50 epochs):
#   EXPERTS=20 BUFFER_EPOCHS=30   expert buffer (MTT needs BUFFER_EPOCHS >= max_start_epoch + expert_epochs)
#   DM_ITERS=20000                DM iterations; PDD+DM runs DM_ITERS/5 per stage (equal total iterations)
#   MTT_ITERS=5000                MTT iterations; PDD+MTT runs MTT_ITERS/5 per stage
#   TRANSITION_EPOCHS=1000        PDD+MTT: epochs each expert trains on the union between stages
#   EVAL_SEEDS=3 EVAL_EPOCHS=300  students per set; epochs (per stage for PDD)
#   QUICK=1                       tiny budgets: checks the whole script end to end in a few minutes
#   STEPS="buffer dm pdd_dm mtt pdd_mtt"   which steps to run (in this order)
# Re-running with the same OUT_DIR skips finished steps and resumes interrupted ones (--resume), so the work can be
# split over several calls of a machine that kills long commands. Measured on an H100 (QUICK and partial runs):
# buffer ~1.1 s per expert-epoch at 4 experts in parallel; DM ~13 ms per iteration (20000: ~5 min); MTT (N 30,
# 100 images) ~0.38 s per iteration (5000: ~32 min); evaluation ~1 min per run; PDD+MTT adds 4 transitions.
set -euo pipefail
out=${1:?usage: benchmarks/gpu_pdd.sh OUT_DIR [FASHION_MNIST_IDX_DIR]}
data=${2:-${FMNIST:-/usr/share/datasets/fashion-mnist}}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

if [[ "${QUICK:-0}" == 1 ]]; then
  EXPERTS=4 BUFFER_EPOCHS=6 DM_ITERS=50 MTT_ITERS=10 TRANSITION_EPOCHS=20 EVAL_SEEDS=1 EVAL_EPOCHS=20
  mtt_shape=(--syn-steps 5 --expert-epochs 2 --max-start-epoch 3)
  pdd_mtt_shape=(--syn-steps 5 --expert-epochs 2 --max-start-epoch 3)
else
  # MTT, C10 IPC10 row of the spec (no ZCA: lr_img 1000); PDD+MTT, C10 "IPC10" row (ipc_stage 2).
  mtt_shape=(--syn-steps 30 --expert-epochs 2 --max-start-epoch 20 --lr-img 1000 --lr-lr 1e-5 --lr-teacher 0.01)
  pdd_mtt_shape=(--syn-steps 50 --expert-epochs 2 --max-start-epoch 5 --lr-img 1000 --lr-lr 1e-7 --lr-teacher 0.01
                 --batch-syn 20)
fi
EXPERTS=${EXPERTS:-20} BUFFER_EPOCHS=${BUFFER_EPOCHS:-30} DM_ITERS=${DM_ITERS:-20000} MTT_ITERS=${MTT_ITERS:-5000}
TRANSITION_EPOCHS=${TRANSITION_EPOCHS:-1000} EVAL_SEEDS=${EVAL_SEEDS:-3} EVAL_EPOCHS=${EVAL_EPOCHS:-300}
common=(--dataset fashion-mnist --data-root "$data" --ipc 10 --device cuda --seed 0
        --eval-seeds "$EVAL_SEEDS" --eval-epochs "$EVAL_EPOCHS" --quiet)

steps=" ${STEPS:-buffer dm pdd_dm mtt pdd_mtt} "
step() {  # step NAME ARGS...: run one command (resuming it if interrupted), log it, append its table to summary.txt
  local name=$1; shift
  [[ "$steps" == *" $name "* ]] || return 0
  if [[ -f "$out/$name/results.json" || -f "$out/$name/trajectories.pt" ]]; then echo "== $name: done, skipped"; return 0; fi
  local resume=()
  if [[ -f "$out/$name/config.json" ]]; then
    if [[ "$name" == buffer ]]; then rm -rf "${out:?}/$name"; else resume=(--resume); fi
  fi
  echo "== $name: python -m fastdistill $* ${resume[*]}" | tee -a "$out/summary.txt"
  local t0=$SECONDS
  python -m fastdistill "$@" "${resume[@]}" >> "$out/$name.log" 2>&1 || { tail -20 "$out/$name.log"; exit 1; }
  tail -n 25 "$out/$name.log" >> "$out/summary.txt"
  echo "($name: $((SECONDS - t0)) s)" | tee -a "$out/summary.txt"
}

nvidia-smi --query-gpu=name,memory.total --format=csv,noheader >> "$out/summary.txt" 2>/dev/null || true
step buffer buffer --dataset fashion-mnist --data-root "$data" --device cuda --seed 0 --experts "$EXPERTS" \
  --epochs "$BUFFER_EPOCHS" --output "$out/buffer" --quiet
step dm distill --method dm "${common[@]}" --iterations "$DM_ITERS" --output "$out/dm"
step pdd_dm pdd --base dm --stages 5 "${common[@]}" --iterations $((DM_ITERS / 5)) --output "$out/pdd_dm"
step mtt distill --method mtt "${common[@]}" --buffer "$out/buffer" --iterations "$MTT_ITERS" "${mtt_shape[@]}" \
  --output "$out/mtt"
step pdd_mtt pdd --base mtt --stages 5 "${common[@]}" --buffer "$out/buffer" --iterations $((MTT_ITERS / 5)) \
  --transition-epochs "$TRANSITION_EPOCHS" "${pdd_mtt_shape[@]}" --output "$out/pdd_mtt"
python - "$out" <<'EOF' >> "$out/summary.txt"
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
print("\nmethod    students trained on             distilled %                 random real %    epochs  steps")
for name in ("dm", "pdd_dm", "mtt", "pdd_mtt"):
    if not (out / name / "results.json").exists():
        continue
    for row in json.loads((out / name / "results.json").read_text())["rows"]:
        d, r = row["distilled"], row["random_real"]
        print(f"{name:<9} {row['name']:<31} {d['mean']:6.2f} ± {d['std']:4.2f}  random real {r['mean']:6.2f} ± "
              f"{r['std']:4.2f}  {row['epochs']:>6} {row['steps']:>6}")
EOF
cat "$out/summary.txt"
