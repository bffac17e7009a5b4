#!/usr/bin/env bash
# Rebuild the shipped model from scratch (the recipe recorded in models/edgeocr-crnn.json).
# Needs .venv-convert (make setup-convert) and the real DEV crops (REAL=path, default ../shared/data/real).
# On a 2-core CPU: synth ~15 min, teacher ~60 min, student ~60 min, distillation ~35 min, export ~2 min,
# pruning + fine-tuning ~15 min; QAT=1 adds the quantisation-aware run (~20 min), COMPARE=1 the
# sequence-module comparison.
set -euo pipefail
cd "$(dirname "$0")/.."
REAL=${REAL:-../shared/data/real}
CACHE=${CACHE:-cache}
RUNS=${RUNS:-runs}
PY=${PY:-.venv-convert/bin/python}
conv() { "$PY" -m convert.cli "$@"; }

conv synth --out "$CACHE/synth-v0" --shards 20 --per-shard 5000 --seed 0
conv synth --out "$CACHE/synth-v1" --shards 30 --per-shard 5000 --seed 1000
conv synth --out "$CACHE/synth-v2" --shards 10 --per-shard 5000 --seed 2000
DATA=(--real-root "$REAL" --real-weight 0.25 --stitched 15000 --batch-size 64)

# 1. the teacher: 1.2 M parameters, BiLSTM sequence (float only, never exported)
conv train --out "$RUNS/teacher" --preset teacher --synth "$CACHE/synth-v0" "$CACHE/synth-v1" "${DATA[@]}" \
    --steps 8000 --lr 2e-3 --eval-every 2000
# 2. the student: 0.39 M parameters, conv sequence; CTC first, then CTC + KL on the teacher's frame posteriors
conv train --out "$RUNS/student" --preset student --synth "$CACHE/synth-v0" "$CACHE/synth-v1" "${DATA[@]}" \
    --steps 14000 --lr 2e-3
conv distill --out "$RUNS/distilled" --init "$RUNS/student/last.pt" --teacher "$RUNS/teacher/last.pt" \
    --synth "$CACHE/synth-v0" "$CACHE/synth-v1" "$CACHE/synth-v2" "${DATA[@]}" \
    --steps ${DISTILL_STEPS:-4500} --lr 1e-3 --kd-weight 0.5 --temperature 2 --seed 2
# 3. structured pruning: 15 % of the backbone channels by BN gamma, then fine-tuning with the same
#    distillation loss (more than that cost accuracy: see README "Model stages")
conv prune "$RUNS/distilled/last.pt" --fraction ${PRUNE_FRACTION:-0.15} --out "$RUNS/pruned-init.pt"
conv distill --out "$RUNS/pruned" --init "$RUNS/pruned-init.pt" --teacher "$RUNS/teacher/last.pt" \
    --synth "$CACHE/synth-v0" "$CACHE/synth-v1" "$CACHE/synth-v2" "${DATA[@]}" \
    --steps ${PRUNE_STEPS:-2000} --lr 1e-3 --kd-weight 0.5 --temperature 2 --seed 3
# 4. full INT8, calibrated on synthetic crops plus the train part of the real folders; parity enforced
SHIP=${SHIP:-$RUNS/pruned/last.pt}
conv export "$SHIP" --out models/edgeocr-crnn.tflite --name edgeocr-crnn \
    --calib "$CACHE/synth-v0/shard-00000.npz" --calib-real "$REAL" --real-root "$REAL"
conv slim "$SHIP" --out models/edgeocr-crnn.pt

# Quantisation-aware fine-tuning (measured, not shipped: it moved the INT8-vs-float gap by one crop at most)
if [ "${QAT:-0}" = 1 ]; then
  conv distill --qat --out "$RUNS/qat" --init "$RUNS/distilled/last.pt" --teacher "$RUNS/teacher/last.pt" \
      --synth "$CACHE/synth-v0" "$CACHE/synth-v1" "$CACHE/synth-v2" "${DATA[@]}" \
      --steps 1200 --lr 2e-4 --kd-weight 0.5 --temperature 2 --seed 4 --threads 1
  conv export "$RUNS/qat/last.pt" --out "$RUNS/qat/edgeocr-qat.tflite" --calib "$CACHE/synth-v0/shard-00000.npz" \
      --calib-real "$REAL" --real-root "$REAL"
fi

# Sequence-module comparison (README "Sequence module, measured"): same data, 1,500 steps each, 1 thread.
if [ "${COMPARE:-0}" = 1 ]; then
  for p in student-lstm student-gru student; do
    conv train --out "$RUNS/cmp-$p" --preset "$p" --synth "$CACHE/synth-v0" "$CACHE/synth-v1" --real-root "$REAL" \
        --real-weight 0.25 --stitched 5000 --steps 1500 --lr 2e-3 --batch-size 64 --threads 1 --eval-every 1500
    conv export "$RUNS/cmp-$p/last.pt" --out "$RUNS/cmp-$p/m.tflite" --parity-count 200 || true  # recurrent ones fail the budget
  done
fi
