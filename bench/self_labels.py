"""How right are the self-labels that step 1's fine-tuning would train on?

    OMP_NUM_THREADS=1 .venv/bin/python bench/self_labels.py [--data ../shared/data/camvid]

On CamVid with the protocol of ``bench/camvid_al.sh`` (seed sets of 10 whole images, the seed
models of 120 epochs, kept in ``.sim-cache/seed_models``), the product's step 1 (strategy
``default``) queries 10 images and the simulated annotator answers, exactly as the simulator
does. Then the labels the fine-tuning would get are filled as
:func:`dbsal_backend.engine.training.fit` fills them with ``Recipe.self_label`` set
(:func:`~dbsal_backend.engine.self_labels.self_labeled`, the same model, the same class weights, at the
working resolution), for several thresholds, and compared with CamVid's ground truth at that
resolution (void aside):

``human_pixels`` the pixels people labeled (seed set and step 1), void aside
``filled``       the share of the unlabeled, non-void pixels of the labeled images that get a
                 self-label
``accuracy``     the share of those self-labels that are the true class
``class_share``  per class, its share of the self-labels, beside its share of the person's
                 labels (``human_share``) and of the truth of the unlabeled pixels

Writes ``bench/results/self_labels.json``. The strategy ``self_labeled`` (threshold 0.9) is the
curve in ``bench/results/camvid_al.json``; this bench says what it trained on.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dbsal_backend.engine.constants import IGNORE_INDEX  # noqa: E402
from dbsal_backend.engine.data import fit_side, resize_nearest  # noqa: E402
from dbsal_backend.engine.self_labels import self_labeled  # noqa: E402
from dbsal_backend.simulator import STRATEGIES  # noqa: E402
from dbsal_backend.engine.training import class_weights  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from prelabels import al_simulation  # noqa: E402

THRESHOLDS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98)


def shares(labels: np.ndarray, n_classes: int) -> list[float]:
    counts = np.bincount(labels.astype(np.intp), minlength=n_classes)[:n_classes]
    return (counts / max(int(counts.sum()), 1)).round(4).tolist()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="../shared/data/camvid")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--out", default="bench/results/self_labels.json")
    args = p.parse_args()
    sim = al_simulation(args.data)
    cfg, pool_x, pool_y = sim.cfg, sim.pool_images, sim.pool_labels
    n = cfg.n_classes
    strategy = STRATEGIES["default"]
    policy = replace(strategy.policy, images=cfg.images_per_step)
    out = {"settings": {"data": args.data, "seeds": args.seeds, "strategy": "default",
                        "step": 1, "first_epochs": cfg.first_epochs, "max_side": cfg.max_side,
                        "thresholds": list(THRESHOLDS)},
           "seeds": {}}
    pooled = {t: [0, 0, 0] for t in THRESHOLDS}  # unlabeled, filled, right
    for seed in args.seeds:
        t0 = time.perf_counter()
        model, labeled, _, miou0 = sim.seed_start(seed)
        result = sim.step(sim.scorer(model, labeled, seed), strategy, policy, labeled, seed)
        for query in result.queries:
            labeled[query.key] = sim.annotator.review(
                pool_y[query.key], query.superpixels, query.regions).labels
        # what Simulation.train hands to fit: the working resolution
        idx = sorted(labeled)
        images = [fit_side(pool_x[i], cfg.max_side) for i in idx]
        labels = [resize_nearest(labeled[i], *im.shape[:2]) for i, im in zip(idx, images)]
        truths = [resize_nearest(pool_y[i], *im.shape[:2]) for i, im in zip(idx, images)]
        weights = class_weights(labels, n)
        human = np.concatenate([lbl[lbl != IGNORE_INDEX] for lbl in labels])
        gaps = [(lbl == IGNORE_INDEX) & (t != IGNORE_INDEX) for lbl, t in zip(labels, truths)]
        gap_truth = np.concatenate([t[g] for t, g in zip(truths, gaps)])
        row = {"seed_miou": miou0, "human_pixels": int(human.size),
               "unlabeled_pixels": int(gap_truth.size),
               "human_share": shares(human, n), "gap_truth_share": shares(gap_truth, n),
               "thresholds": {}}
        for t in THRESHOLDS:
            filled = self_labeled(model, images, labels, t, weights)
            guess = np.concatenate([f[g] for f, g in zip(filled, gaps)])
            truth = gap_truth[guess != IGNORE_INDEX]
            guess = guess[guess != IGNORE_INDEX]
            right = int((guess == truth).sum())
            row["thresholds"][str(t)] = {
                "filled": guess.size / max(gap_truth.size, 1),
                "accuracy": right / max(guess.size, 1),
                "class_share": shares(guess, n),
                "class_recall": [round(float(((guess == c) & (truth == c)).sum())
                                       / max(int((gap_truth == c).sum()), 1), 4)
                                 for c in range(n)]}
            pooled[t][0] += gap_truth.size
            pooled[t][1] += guess.size
            pooled[t][2] += right
        row["seconds"] = round(time.perf_counter() - t0, 1)
        out["seeds"][str(seed)] = row
        print(seed, {t: (round(v["filled"], 3), round(v["accuracy"], 3))
                     for t, v in row["thresholds"].items()}, flush=True)
    out["pooled"] = {str(t): {"filled": f / max(u, 1), "accuracy": r / max(f, 1)}
                     for t, (u, f, r) in pooled.items()}
    print(json.dumps(out["pooled"], indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
