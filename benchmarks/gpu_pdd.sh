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

step() {  # step NAME ARGS...: run one command, log it, append its result table to summary.txt
  local name=$1; shift
  echo "== $name: python -m fastdistill $*" | tee -a "$out/summary.txt"
  local t0=$SECONDS
  python -m fastdistill "$@" > "$out/$name.log" 2>&1 || { tail -20 "$out/$name.log"; exit 1; }
  tail -n 25 "$out/$name.log" >> "$out/summary.txt"
  echo "($name: $((SECONDS - t0)) s)" | tee -a "$out/summary.txt"
}

nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$out/summary.txt" || true
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
print("\nmethod    set                                   top-1 %        epochs  steps")
for name in ("dm", "pdd_dm", "mtt", "pdd_mtt"):
    for row in json.loads((out / name / "results.json").read_text())["rows"]:
        print(f"{name:<9} {row['name']:<37} {row['mean']:6.2f} ± {row['std']:4.2f}  {row['epochs']:>6} {row['steps']:>6}")
EOF
cat "$out/summary.txt"
