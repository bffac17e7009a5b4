#!/usr/bin/env bash
# Rebuild the shipped model from scratch (the recipe recorded in models/edgeocr-crnn.json).
# Needs .venv-convert (make setup-convert) and the real DEV crops (REAL=path, default ../shared/data/real).
# On a 2-core CPU: synth ~10 min, training ~60 min, export ~2 min (PRUNE=1 adds ~15 min).
set -euo pipefail
cd "$(dirname "$0")/.."
REAL=${REAL:-../shared/data/real}
CACHE=${CACHE:-cache}
RUNS=${RUNS:-runs}
PY=${PY:-.venv-convert/bin/python}
conv() { "$PY" -m convert.cli "$@"; }

conv synth --out "$CACHE/synth-v0" --shards 20 --per-shard 5000 --seed 0
conv synth --out "$CACHE/synth-v1" --shards 30 --per-shard 5000 --seed 1000
conv train --out "$RUNS/student" --preset student --synth "$CACHE/synth-v0" "$CACHE/synth-v1" \
    --real-root "$REAL" --real-weight 0.25 --stitched 15000 --steps 14000 --lr 2e-3 --batch-size 64
conv export "$RUNS/student/last.pt" --out models/edgeocr-crnn.tflite --name edgeocr-crnn \
    --calib "$CACHE/synth-v0/shard-00000.npz" --real-root "$REAL"
conv slim "$RUNS/student/last.pt" --out models/edgeocr-crnn.pt

# Pruning (measured, not shipped: 25 % of the backbone channels cost accuracy on the real held-back
# parts and its INT8 export broke the parity budget; see README "Model stages"):
if [ "${PRUNE:-0}" = 1 ]; then
  conv prune "$RUNS/student/last.pt" --fraction 0.25 --out "$RUNS/pruned-init.pt"
  conv train --out "$RUNS/pruned" --init "$RUNS/pruned-init.pt" --synth "$CACHE/synth-v0" "$CACHE/synth-v1" \
      --real-root "$REAL" --real-weight 0.25 --stitched 15000 --steps 2000 --lr 1e-3 --batch-size 64 --seed 1
  conv export "$RUNS/pruned/last.pt" --out "$RUNS/pruned/edgeocr-pruned.tflite" --calib "$CACHE/synth-v0/shard-00000.npz"
fi

# Sequence-module comparison (README "Sequence module, measured"): same data, 1,500 steps each, 1 thread.
if [ "${COMPARE:-0}" = 1 ]; then
  for p in student-lstm student-gru student; do
    conv train --out "$RUNS/cmp-$p" --preset "$p" --synth "$CACHE/synth-v0" "$CACHE/synth-v1" --real-root "$REAL" \
        --real-weight 0.25 --stitched 5000 --steps 1500 --lr 2e-3 --batch-size 64 --threads 1 --eval-every 1500
    conv export "$RUNS/cmp-$p/last.pt" --out "$RUNS/cmp-$p/m.tflite" --parity-count 200 || true  # recurrent ones fail the budget
  done
fi
