#!/usr/bin/env bash
# Label efficiency on the Peanut crop/weed fields, in annotator clicks (bench/results/peanut_al.json):
# the product's default on a second domain, with CamVid's 4-step protocol (bench/camvid_al.sh).
#   bench/peanut_al.sh [DATA_DIR]      (default ../shared/data/peanut; about 1.7 hours a seed on 2 cores)
#   AL_ONLY="s0_a" bench/peanut_al.sh  (one part, each under an hour; then the combined JSON)
# The pool is Peanut train (280 images of 720x960), val (60) is scored after each step; 3 classes
# (background, crop, weed), no void. The model sees images at max side 240 (180x240; superpixels,
# regions and clicks at full size); EfficientNet-Lite0 (ImageNet weights); a seed set of 10 whole
# images trained 120 epochs (DBSAL_FIRST_EPOCHS), then 4 steps of 10 images, fine-tuning 20
# epochs a step, MC dropout T = 20, entropy. Full supervision: 40 epochs over the whole pool.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data/peanut}
AL_CLASSES=(--n-classes 3)
source bench/al_lib.sh  # sim, long, run, combine
# In the order of the results: seed 0's default, random and control, then the paper's dbsal and
# its matched static budget, then full supervision (its run does not depend on the seed model),
# then seeds 1 and 2 the same way.
sim peanut_al 120 s0_a 0 -- repaint random control  # the default until dominant-class answers
sim peanut_al 120 s0_b 0 -- dbsal static
sim peanut_al 120 full 0 -- full
# dominant-class answers (Cai et al. 2021): keep or relabel each region, never repaint
sim peanut_al 120 s0_c 0 -- dominant
for seed in 1 2; do
  sim peanut_al 120 "s${seed}_a" "$seed" -- repaint random control
  sim peanut_al 120 "s${seed}_b" "$seed" -- dbsal static
  sim peanut_al 120 "s${seed}_c" "$seed" -- dominant
done
combine peanut_al bench/results/peanut_al.json --rename repaint=default
# The product's default since dominant-class answers won (their runs are "dominant"; the earlier
# default's runs, with repaints, are "repaint"), against the others: peanut_al_answers.json.
combine peanut_al bench/results/peanut_al_answers.json --rename default=repaint dominant=default
# A cheaper start: dominant-class answers from the first 5 of the 10 whole images, 16 steps of 10
# (into the clicks of the others' first step; about 35 minutes a seed for the first 10, 50 for the
# other 6, resumed from the 10th). The product's default since it won (its runs are "seed5"; the
# 10-image start with dominant-class answers is "seed10"): peanut_al_start.json.
for seed in 0 1 2; do
  run peanut_al_start "seed5_s${seed}" --first-epochs 120 --images-per-step 10 --steps 16 --epochs 20 \
    "$seed" -- seed5
  # the same on finer superpixels (SLICO 600), 8 steps (about 25 minutes a seed)
  run peanut_al_start "fine_s${seed}" --first-epochs 120 --images-per-step 10 --steps 8 --epochs 20 \
    "$seed" -- fine
  # the cheaper start fine-tuning the seed model at every step, not the last step's model (no
  # chain of fine-tunings), 16 steps (about 75 minutes a seed)
  run peanut_al_anchor "anchored_s${seed}" --first-epochs 120 --images-per-step 10 --steps 16 \
    --epochs 20 "$seed" -- anchored
  # the same fine-tuning the model of the last step that doubled the labels (15, 35, 75, 155
  # images: at most 4 fine-tunings in a chain), in two parts of under an hour (8, then 16 steps)
  run peanut_al_anchor/parts "doubling_s${seed}_8" --first-epochs 120 --images-per-step 10 \
    --steps 8 --epochs 20 "$seed" -- doubling
  run peanut_al_anchor "doubling_s${seed}" --first-epochs 120 --images-per-step 10 --steps 16 \
    --epochs 20 "$seed" -- doubling
  # the default leaving out the 20% least likely labels of each class and image before each
  # fine-tuning (trimmed), in two parts of under an hour (8, then 16 steps)
  run peanut_al_trim/parts "trimmed_s${seed}_8" --first-epochs 120 --images-per-step 10 \
    --steps 8 --epochs 20 "$seed" -- trimmed
  run peanut_al_trim "trimmed_s${seed}" --first-epochs 120 --images-per-step 10 --steps 16 \
    --epochs 20 "$seed" -- trimmed
  # the same trimming of the region answers alone (the seed set's whole images kept whole)
  run peanut_al_trim/parts "trimmed_answers_s${seed}_8" --first-epochs 120 --images-per-step 10 \
    --steps 8 --epochs 20 "$seed" -- trimmed_answers
  run peanut_al_trim "trimmed_answers_s${seed}" --first-epochs 120 --images-per-step 10 \
    --steps 16 --epochs 20 "$seed" -- trimmed_answers
  # no whole images: 40 superpixels most different in colour of each of 30 pool images, answered
  # with their class (colour_start; bench/region_start.py's `colour`), 8 steps
  run peanut_al_region "colour_start_s${seed}" --first-epochs 120 --images-per-step 10 \
    --steps 8 --epochs 20 "$seed" -- colour_start
  # a cheaper start still: the first 3 of the seed set's whole images, not 5 (seed3), 6 steps
  run peanut_al_seed3 "seed3_s${seed}" --first-epochs 120 --images-per-step 10 \
    --steps 6 --epochs 20 "$seed" -- seed3
done
combine "peanut_al peanut_al_start" bench/results/peanut_al_start.json --rename default=repaint dominant=seed10 seed5=default
# Fine-tuning the seed model (anchored), or the last model that doubled the labels (doubling), at
# every step against the default's chain (anchored: seed 0; doubling: seed 0): peanut_al_anchor.json.
combine "peanut_al_start peanut_al_anchor" bench/results/peanut_al_anchor.json --rename seed5=default
# The default with trimmed labels against the default and the others: peanut_al_trim.json (16
# steps; trimmed: seeds 0, 1; trimmed_answers: 0, 1, 2), peanut_al_trim_8.json (the first 8 steps, the
# parts; trimmed, trimmed_answers: seeds 0, 1, 2).
combine "peanut_al peanut_al_start peanut_al_trim" bench/results/peanut_al_trim.json \
  --rename default=repaint dominant=seed10 seed5=default
combine "peanut_al peanut_al_start peanut_al_trim/parts" bench/results/peanut_al_trim_8.json \
  --rename default=repaint dominant=seed10 seed5=default
# The product's default since trimming the region answers won (its runs are "trimmed_answers"; the
# default before, untrimmed, is "seed5"), against the others: peanut_al_default.json (the README's).
combine "peanut_al peanut_al_start peanut_al_trim" bench/results/peanut_al_default.json \
  --rename default=repaint dominant=seed10 trimmed_answers=default
# The start of regions picked by colour against the default: peanut_al_region.json.
cp bench/results/peanut_al/full.json bench/results/peanut_al_region/full.json
combine "peanut_al_trim peanut_al_region" bench/results/peanut_al_region.json \
  --rename trimmed_answers=default
# The start of 3 whole images against the default's 5: peanut_al_seed3.json.
cp bench/results/peanut_al/full.json bench/results/peanut_al_seed3/full.json
combine "peanut_al_trim peanut_al_seed3" bench/results/peanut_al_seed3.json \
  --rename trimmed_answers=default
