#!/usr/bin/env bash
# Ablation of the superpixel count on CamVid: the same run as camvid_al.sh (dbsal, static,
# random; 2 seeds) with smaller superpixels, to see how the split's granularity changes label
# efficiency. Writes bench/results/camvid_al_sp<N>.{json,png}.
#   bench/camvid_al_superpixels.sh [N_SEGMENTS] [DATA_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1200}
DATA=${2:-../shared/data/camvid}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
exec .venv/bin/python -m dbsal_backend.simulate \
  --data "$DATA" --n-classes 11 --ignore-value 11 --scale 0.5 \
  --strategies dbsal static random --seeds 0 1 \
  --arch efficientnet_lite0 --pretrained true \
  --init-images 10 --step-size 10 --steps 4 \
  --epochs-initial 12 --epochs-step 4 --batch-size 8 --lr 1e-3 \
  --mc-samples 20 --uncertainty entropy --split natural_breaks --oracle full \
  --n-segments "$N" --cache-dir .sim-cache \
  --out "bench/results/camvid_al_sp$N.json" --plot "bench/results/camvid_al_sp$N.png"
