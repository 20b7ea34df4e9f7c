#!/usr/bin/env bash
# Label efficiency on CamVid: dbsal vs static budget vs random whole images vs full supervision.
#   bench/camvid_al.sh [DATA_DIR [SIMULATE OPTIONS...]]   (default ../shared/data/camvid)
# Options after DATA_DIR override the ones below (the variants in bench/ use that).
# Sized to finish within an hour on a 2-core CPU (27 minutes measured): images at half scale (180x240),
# a seed set of 10 whole images, 4 steps of 10 images, short fine-tuning per step, 2 seeds.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data/camvid}
shift || true
# One intra-op thread: on a shared 2-core machine, torch's OpenMP threads spin against other
# processes and MC-dropout scoring became 30x slower with 2 threads than with 1 (measured).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
exec .venv/bin/python -m dbsal_backend.simulate \
  --data "$DATA" --n-classes 11 --ignore-value 11 --scale 0.5 \
  --strategies dbsal static random full --seeds 0 1 \
  --arch efficientnet_lite0 --pretrained true \
  --init-images 10 --step-size 10 --steps 4 \
  --epochs-initial 12 --epochs-step 4 --epochs-full 4 --batch-size 8 --lr 1e-3 \
  --mc-samples 20 --uncertainty entropy --split natural_breaks --oracle full \
  --n-segments 300 --cache-dir .sim-cache \
  --out bench/results/camvid_al.json --plot bench/results/camvid_al.png "$@"
