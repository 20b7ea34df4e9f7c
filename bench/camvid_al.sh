#!/usr/bin/env bash
# Label efficiency on CamVid, measured in annotator clicks (bench/results/camvid_al.json).
#   bench/camvid_al.sh [DATA_DIR]      (default ../shared/data/camvid; several hours on 2 cores)
# Every run: the pool is CamVid train (367 images), val (101) is scored after each step; images
# at half size for the model (max side 240; superpixels, regions and clicks at full size),
# EfficientNet-Lite0 (ImageNet weights), a seed set of 10 whole images (40 epochs), then 4 steps
# of 10 images, fine-tuning 20 epochs per step, MC dropout T = 20, entropy.
# The runs are split to fit an hour each on this machine and combined at the end; each run's
# JSON (with its settings) is kept under bench/results/camvid_al/.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data/camvid}
OUT=bench/results/camvid_al
mkdir -p "$OUT"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
sim() {  # sim NAME SEEDS... -- STRATEGIES...
  local name=$1; shift
  local seeds=(); while [ "$1" != "--" ]; do seeds+=("$1"); shift; done; shift
  [ -f "$OUT/$name.json" ] || .venv/bin/python -m dbsal_backend.simulate --data "$DATA" \
    --n-classes 11 --ignore-value 11 --max-side 240 --init-images 10 --images-per-step 10 \
    --steps 4 --first-epochs 40 --epochs 20 --mc-samples 20 --seeds "${seeds[@]}" \
    --strategies "$@" --out "$OUT/$name.json"
}
# seed 0: the candidates (screening), then seeds 1 and 2 of the product default and baselines
sim screen_A 0 -- dbsal merged smoothed static
sim screen_B 0 -- coarse step balanced random
sim screen_C 0 -- default default_brush
sim final_1a 1 -- default random
sim final_1b 2 -- default random
sim final_2a 1 -- dbsal static
sim final_2b 2 -- dbsal static
sim control 0 1 2 -- control   # no new labels: what the extra fine-tuning alone gives
sim full 0 -- full
.venv/bin/python -m dbsal_backend.simulate --data "$DATA" --n-classes 11 --default default \
  --combine "$OUT"/*.json --out bench/results/camvid_al.json --plot bench/results/camvid_al.png
