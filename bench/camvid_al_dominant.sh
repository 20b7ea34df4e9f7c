#!/usr/bin/env bash
# The camvid_al.sh run with the "dominant label" oracle: one class per queried superpixel (its
# most frequent ground-truth class), as a person confirming or changing a pre-labeled region in
# Label Studio would answer. Writes bench/results/camvid_al_dominant.{json,png}.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data/camvid}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
exec .venv/bin/python -m dbsal_backend.simulate \
  --data "$DATA" --n-classes 11 --ignore-value 11 --scale 0.5 \
  --strategies dbsal static random --seeds 0 1 \
  --arch efficientnet_lite0 --pretrained true \
  --init-images 10 --step-size 10 --steps 4 \
  --epochs-initial 12 --epochs-step 4 --batch-size 8 --lr 1e-3 \
  --mc-samples 20 --uncertainty entropy --split natural_breaks --oracle dominant \
  --n-segments 300 --cache-dir .sim-cache \
  --out bench/results/camvid_al_dominant.json --plot bench/results/camvid_al_dominant.png
