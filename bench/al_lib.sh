# Helpers of the label-efficiency benchmarks (bench/camvid_al.sh, bench/peanut_al.sh): source it
# after setting, in the caller,
#   DATA        the data set root (train/ = the pool, val/ = scored after every step)
#   AL_CLASSES  the options that describe its labels, an array: --n-classes N [--ignore-value V]
# Optional: PY (the Python, default .venv/bin/python) and AL_ONLY (run only the runs of these
# names, separated by spaces: one part of a long script per invocation, each under an hour).
# Every run's JSON is kept under bench/results/DIR/NAME.json and skipped when it is there; a run
# stopped half-way goes on from its last step (the simulator's cache, .sim-cache/runs).
# Every run: images at max side 240 for the model (superpixels, regions and clicks at full size),
# EfficientNet-Lite0 (ImageNet weights), a seed set of 10 whole images, MC dropout T = 20,
# entropy; full supervision 40 epochs over the whole pool.
PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
sim() {  # sim DIR FIRST_EPOCHS NAME SEEDS... -- STRATEGIES...   (the 4-step protocol)
  local dir=$1 first=$2 name=$3; shift 3
  run "$dir" "$name" --first-epochs "$first" --images-per-step 10 --steps 4 --epochs 20 "$@"
}
long() {  # long DIR NAME STEPS IMAGES_PER_STEP EPOCHS SEEDS... -- STRATEGIES...   (long protocols)
  local dir=$1 name=$2 steps=$3 k=$4 epochs=$5; shift 5
  run "$dir" "$name" --first-epochs 120 --images-per-step "$k" --steps "$steps" --epochs "$epochs" "$@"
}
run() {  # run DIR NAME OPTIONS... SEEDS... -- STRATEGIES...
  local dir=bench/results/$1 name=$2; shift 2
  if [ -n "${AL_ONLY:-}" ] && [[ " $AL_ONLY " != *" $name "* ]]; then return 0; fi
  local opts=(); while [[ "$1" == --* ]]; do opts+=("$1" "$2"); shift 2; done
  local seeds=(); while [ "$1" != "--" ]; do seeds+=("$1"); shift; done; shift
  mkdir -p "$dir"
  [ -f "$dir/$name.json" ] || "$PY" -m dbsal_backend.simulator --data "$DATA" \
    "${AL_CLASSES[@]}" --max-side 240 --init-images 10 --full-epochs 40 \
    --mc-samples 20 "${opts[@]}" --seeds "${seeds[@]}" --strategies "$@" \
    --out "$dir/$name.json"
}
combine() {  # combine "DIR..." OUT [OPTIONS...]   (the runs of the DIRs that finished; default: default)
  local files=() out=$2 dir
  for dir in $1; do files+=(bench/results/$dir/*.json); done
  shift 2
  [ -e "${files[0]}" ] || return 0
  "$PY" -m dbsal_backend.simulator --data "$DATA" "${AL_CLASSES[@]:0:2}" --default default \
    --combine "${files[@]}" --out "$out" --plot "${out%.json}.png" "$@"
}
