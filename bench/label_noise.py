"""How wrong are the default's labels, and how many of the wrong ones does trimming leave out?

    OMP_NUM_THREADS=1 .venv/bin/python bench/label_noise.py --data ../shared/data/peanut \\
        --n-classes 3 --ignore-value -1 --steps 16 --images-per-step 10 --seeds 0 1 2
    OMP_NUM_THREADS=1 .venv/bin/python bench/label_noise.py --steps 9 --images-per-step 20

Takes the labels of the last step that the default's run (``seed5``: ``bench/camvid_al.sh``,
``bench/peanut_al.sh``) kept in ``.sim-cache`` and compares the answered regions' labels (the
queried images; the seed set's whole images are left out) with the ground truth: the
``noise`` is the share of those labeled pixels whose label is not their true class (with
dominant-class answers, the parts of other classes in a region). Then, per trimming share,
what :func:`~dbsal_backend.engine.trimming.least_likely` (per image and class) leaves out,
judged by the run's own last model (corrected for the loss's class weights, as in
:func:`~dbsal_backend.engine.trimming.trimmed`): the share of the wrong labels and of the right ones. That
model trained on these very labels (it fits some of the wrong ones), so this is what trimming
does at the worst; in a run each fine-tuning is judged by the model before it, which has not
seen the newest answers. Writes ``bench/results/label_noise.json`` (``--out``; a data set's
entry is replaced, the others kept).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from dbsal_backend.engine.constants import IGNORE_INDEX  # noqa: E402
from dbsal_backend.engine.data import fit_side, resize_nearest  # noqa: E402
from dbsal_backend.engine.scoring import Scorer  # noqa: E402
from dbsal_backend.engine.training import class_weights  # noqa: E402
from dbsal_backend.engine.trimming import least_likely  # noqa: E402
from dbsal_backend.simulator import STRATEGIES  # noqa: E402
from prelabels import al_simulation  # noqa: E402

SHARES = (0.05, 0.1, 0.2, 0.3)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="../shared/data/camvid")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=9)
    p.add_argument("--images-per-step", type=int, default=20)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--strategy", default="seed5", choices=list(STRATEGIES))
    p.add_argument("--n-classes", type=int, default=11)
    p.add_argument("--ignore-value", type=int, default=11, help="the void value; -1: none")
    p.add_argument("--out", default="bench/results/label_noise.json")
    args = p.parse_args()
    sim = al_simulation(args.data, steps=args.steps, images_per_step=args.images_per_step,
                        epochs=args.epochs, n_classes=args.n_classes,
                        ignore_value=None if args.ignore_value < 0 else args.ignore_value)
    strategy = STRATEGIES[args.strategy]
    seeds = {}
    for seed in args.seeds:
        t0 = time.perf_counter()
        saved = sim.saved_run(strategy, seed)
        if saved is None or len(saved[2]) - 1 != args.steps:
            raise SystemExit(f"no cached run of {args.strategy} seed {seed} to step "
                             f"{args.steps}: run it first (bench/*_al.sh)")
        model, labeled, records = saved
        seed_set = set(sim.seed_set(seed, strategy.init_images))
        weights = class_weights([resize_nearest(labeled[i], *fit_side(
            sim.pool_images[i], sim.cfg.max_side).shape[:2]) for i in sorted(labeled)],
            args.n_classes)  # the loss's, as fit gives trimmed
        scorer = Scorer(model, args.n_classes, mc_samples=1, max_side=sim.cfg.max_side,
                        device=torch.device("cpu"), class_weights=weights.numpy())
        labeled_px = wrong_px = 0
        left = {s: [0, 0] for s in SHARES}  # share -> [wrong left out, right left out]
        for i in sorted(set(labeled) - seed_set):
            image = fit_side(sim.pool_images[i], sim.cfg.max_side)
            h, w = image.shape[:2]
            given = resize_nearest(labeled[i], h, w)
            truth = resize_nearest(sim.pool_labels[i], h, w)
            judged = (given != IGNORE_INDEX) & (truth != IGNORE_INDEX)
            wrong = judged & (given != truth)
            labeled_px += int(judged.sum())
            wrong_px += int(wrong.sum())
            probability = next(scorer.label_probability([image], [given]))
            for share in SHARES:
                out = least_likely(np.where(judged, given, IGNORE_INDEX).astype(np.uint8),
                                   probability, share)
                left[share][0] += int((out & wrong).sum())
                left[share][1] += int((out & judged & ~wrong).sum())
        right_px = labeled_px - wrong_px
        seeds[str(seed)] = {
            "step": len(records) - 1, "images": len(labeled) - len(seed_set),
            "labeled_pixels": labeled_px, "noise": wrong_px / labeled_px,
            "trim": {str(s): {"wrong_left_out": w / wrong_px, "right_left_out": r / right_px,
                              "noise_after": (wrong_px - w) / (labeled_px - w - r)}
                     for s, (w, r) in left.items()},
            "seconds": round(time.perf_counter() - t0, 1)}
        print(f"seed {seed}: noise {wrong_px / labeled_px:.3f}; " + ", ".join(
            f"trim {s}: {t['wrong_left_out']:.2f} of the wrong, {t['right_left_out']:.3f} of "
            f"the right" for s, t in seeds[str(seed)]["trim"].items()), flush=True)
    out_path = Path(args.out)
    out = json.loads(out_path.read_text()) if out_path.exists() else {}
    out[Path(args.data).name] = {
        "settings": {"strategy": args.strategy, "steps": args.steps,
                     "images_per_step": args.images_per_step, "epochs": args.epochs,
                     "max_side": sim.cfg.max_side, "shares": list(SHARES),
                     "judged_by": "the run's own model of its last step"},
        "seeds": seeds,
        "mean": {"noise": float(np.mean([s["noise"] for s in seeds.values()])),
                 "trim": {str(share): {k: float(np.mean([s["trim"][str(share)][k]
                                                         for s in seeds.values()]))
                                       for k in ("wrong_left_out", "right_left_out",
                                                 "noise_after")}
                          for share in SHARES}}}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
