#!/usr/bin/env bash
# Ablation of the superpixel count on CamVid: camvid_al.sh (dbsal, static, random; 2 seeds) with
# smaller superpixels, to see how the split's granularity changes label efficiency.
#   bench/camvid_al_superpixels.sh [N_SEGMENTS] [DATA_DIR]   -> bench/results/camvid_al_sp<N>.*
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1200}
exec bench/camvid_al.sh "${2:-../shared/data/camvid}" --strategies dbsal static random \
  --n-segments "$N" --out "bench/results/camvid_al_sp$N.json" --plot "bench/results/camvid_al_sp$N.png"
