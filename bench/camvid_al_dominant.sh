#!/usr/bin/env bash
# camvid_al.sh with the "dominant label" oracle: one class per queried superpixel (its most
# frequent ground-truth class), as a person confirming or changing a pre-labeled region in Label
# Studio would answer.   bench/camvid_al_dominant.sh [DATA_DIR] -> bench/results/camvid_al_dominant.*
set -euo pipefail
cd "$(dirname "$0")/.."
exec bench/camvid_al.sh "${1:-../shared/data/camvid}" --strategies dbsal static random \
  --oracle dominant --out bench/results/camvid_al_dominant.json --plot bench/results/camvid_al_dominant.png
