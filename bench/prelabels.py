"""How right are the pre-labels of step 1, and what would make them more right?

    OMP_NUM_THREADS=1 .venv/bin/python bench/prelabels.py [--data ../shared/data/camvid]

On CamVid with the protocol of ``bench/camvid_al.sh`` (seed sets of 10 whole images, the seed
models of 120 epochs, kept in ``.sim-cache/seed_models``), the product's step 1 (strategy
``default``) chooses its 10 images and 40 superpixels each, exactly as the simulator does. The
queried superpixels stay fixed; only the pre-label each gets changes. Each variant is judged
as the simulated annotator judges (right when it is the superpixel's most frequent true class,
void aside). Variants:

``product``           what the backend pushes (:meth:`Scorer.prelabels`): per pixel, the class of
                      the prior-corrected softmax of one pass without dropout averaged with the
                      pass on the mirrored image; the superpixel's majority, 2 rounds of graph
                      smoothing. The bench recomputes it and counts where it differs from the
                      pushed pre-labels (``product_mismatches``, 0 when they are the same).
``mc_mean``           the earlier product: ``product`` from the prior-corrected MC mean softmax
                      (T = 20 passes with dropout), the scores' ``predicted``
``majority``          ``mc_mean`` without smoothing
``soft``              the argmax of the superpixel's mean prior-corrected MC softmax (soft vote)
``soft_smoothed``     ``soft`` then 2 rounds of smoothing
``no_prior``          ``mc_mean`` without the correction for the loss's class weights
``half_prior``        ``mc_mean`` with half the correction (``p / sqrt(w)``)
``strong_prior``      ``mc_mean`` with 1.5 times the correction (``p / w ** 1.5``)
``deterministic``     ``mc_mean`` from one pass without dropout (no mirror)
``flip``              ``mc_mean`` averaged with the MC softmax of the mirrored image
``smoothed_4``        ``mc_mean`` with 4 rounds of smoothing
``deterministic_4``   ``deterministic`` with 4 rounds of smoothing
``neighbours``        no classifier: the 15 most similar superpixels of the labeled images vote
                      (cosine of each superpixel's mean encoder features, the stride-8 and the
                      context features each L2-normalised per pixel, averaged with the mirrored
                      image's; a labeled superpixel's class is its most frequent labeled class)
``soft_neighbours``   the soft vote of ``product``'s probabilities (one pass without dropout and
                      its mirror, prior-corrected, normalised) plus ``neighbours``' vote shares

One bound, not a rule: ``top2``, the regions whose true class is one of the two likeliest of
``soft_neighbours``' soft vote (what any rule choosing between the model's two likeliest classes
could reach at best).

With ``--start-images 5 --images-per-step 20 --out bench/results/prelabels_start.json``: the
same from the product's start (its seed batch of 5 whole images, 20 queried images as in the
long protocol).

Writes ``bench/results/prelabels.json``: per seed and variant, right / judged; per seed and
pooled, the ``top2`` bound.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dbsal_backend.engine.constants import IGNORE_INDEX  # noqa: E402
from dbsal_backend.engine.data import fit_side, load_split  # noqa: E402
from dbsal_backend.engine.regions import (SuperpixelTable, adjacent_pairs, smooth_labels,  # noqa: E402
                                   superpixel_table)
from dbsal_backend.simulator import STRATEGIES, SimConfig, Simulation  # noqa: E402
from dbsal_backend.engine.training import Recipe  # noqa: E402
from dbsal_backend.engine.scoring import _tensor  # noqa: E402
from dbsal_backend.engine.uncertainty import mc_dropout  # noqa: E402

VARIANTS = ("product", "mc_mean", "majority", "soft", "soft_smoothed", "no_prior", "half_prior",
            "strong_prior", "deterministic", "flip", "smoothed_4", "deterministic_4", "neighbours",
            "soft_neighbours")
NEIGHBOURS = 15


def probabilities(scorer, image: np.ndarray, *, mc: bool = True, flip: bool = False):
    """``C x h x w`` mean softmax at the working resolution, as the scorer computes it."""
    x = _tensor([fit_side(image, scorer.max_side)])
    if flip:
        x = torch.flip(x, dims=[3])
    with torch.no_grad():
        if mc:
            probs = mc_dropout(scorer.model, x, n_samples=scorer.mc_samples, mode="head",
                               seed=scorer.seed, expected_entropy=False).mean_probs
        else:
            scorer.model.eval()
            probs = torch.softmax(scorer.model(x).float(), dim=1)
    if flip:
        probs = torch.flip(probs, dims=[3])
    return probs[0].numpy()


def features(model, image: np.ndarray, max_side: int) -> np.ndarray:
    """``(height * width) x D`` per-pixel encoder features at full size: the stride-8 and the
    context features of :meth:`EncoderSegmenter.encode`, each L2-normalised per pixel, averaged
    over the image and its mirror (bilinear up to the image's size)."""
    x = _tensor([fit_side(image, max_side)])
    height, width = image.shape[:2]
    model.eval()
    total = 0
    for flip in (False, True):
        with torch.no_grad():
            f = model.encode(torch.flip(x, dims=[3]) if flip else x)
            z = torch.cat([F.normalize(f.low, dim=1), F.normalize(f.context, dim=1)], 1)
        if flip:
            z = torch.flip(z, dims=[3])
        total = total + F.interpolate(z, size=(height, width), mode="bilinear",
                                      align_corners=False)[0]
    return (total / 2).permute(1, 2, 0).reshape(height * width, -1).numpy()


def superpixel_means(sp: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Each superpixel's mean of ``values`` (``pixels x D``, in ``sp``'s raster order)."""
    ids = sp.ravel().astype(np.intp)
    n = int(ids.max()) + 1
    sums = np.stack([np.bincount(ids, weights=v, minlength=n) for v in values.T], 1)
    return sums / np.maximum(np.bincount(ids, minlength=n), 1)[:, None]


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def neighbour_votes(queries: np.ndarray, bank: np.ndarray, bank_labels: np.ndarray,
                    n_classes: int, k: int = NEIGHBOURS) -> np.ndarray:
    """``len(queries) x n_classes``: the share of each class among the ``k`` rows of ``bank``
    most similar (cosine) to each query row."""
    nearest = np.argsort(-(unit(queries) @ unit(bank).T), axis=1)[:, :k]
    votes = np.zeros((len(queries), n_classes))
    for column in nearest.T:
        np.add.at(votes, (np.arange(len(queries)), bank_labels[column]), 1.0 / k)
    return votes


def full_size(probs: np.ndarray, height: int, width: int) -> np.ndarray:
    """``C x h x w`` resized (bilinear) to ``C x height x width``."""
    return np.stack([cv2.resize(p, (width, height), interpolation=cv2.INTER_LINEAR)
                     for p in probs])


def majority(sp: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """Each superpixel's most frequent predicted class, as the product takes it."""
    return superpixel_table(sp, np.zeros(sp.shape, np.float32), predicted, n_classes).label


def soft_vote(sp: np.ndarray, probs: np.ndarray) -> np.ndarray:
    ids = sp.ravel().astype(np.intp)
    n = int(ids.max()) + 1
    sums = np.stack([np.bincount(ids, weights=p.ravel(), minlength=n) for p in probs], 1)
    return sums.argmax(1)


def truth_dominant(sp: np.ndarray, truth: np.ndarray, n_classes: int) -> np.ndarray:
    """Each superpixel's most frequent true class; -1 where it is all void."""
    valid = truth != IGNORE_INDEX
    ids = sp[valid].astype(np.intp)
    n = int(sp.max()) + 1
    counts = np.bincount(ids * n_classes + truth[valid].astype(np.intp),
                         minlength=n * n_classes).reshape(n, n_classes)
    return np.where(counts.sum(1) > 0, counts.argmax(1), -1)


def smoothed(labels: np.ndarray, sizes: np.ndarray, pairs: np.ndarray, rounds: int):
    table = SuperpixelTable(np.zeros(len(labels)), labels.astype(np.int64), sizes)
    return smooth_labels(table, pairs, rounds).label


def al_simulation(data: str, steps: int = 1, images_per_step: int = 10,
                 epochs: int = 20, n_classes: int = 11,
                 ignore_value: int | None = 11) -> Simulation:
    """The simulator as ``bench/camvid_al.sh`` runs it on CamVid (its seed models, kept in
    ``.sim-cache``), or with ``n_classes=3, ignore_value=None`` as ``bench/peanut_al.sh`` runs it
    on Peanut, for the benches that study its step 1 (or, with ``steps`` and the other options,
    its later steps: ``bench/fresh_training.py``)."""
    cfg = SimConfig(n_classes=n_classes, init_images=10, images_per_step=images_per_step,
                    steps=steps, max_side=240, recipe=Recipe(epochs=epochs), first_epochs=120,
                    full_epochs=40, mc_samples=20, device="cpu")
    pool_x, pool_y, _ = load_split(data, "train", ignore_value=ignore_value)
    val_x, val_y, _ = load_split(data, "val", ignore_value=ignore_value)
    return Simulation(pool_x, pool_y, val_x, val_y, cfg)


def merge_seed_files(files: list[str], out: str, summary) -> dict:
    """Join results files of the same settings made by separate processes (one a seed) into
    ``out``, with ``summary(seeds)`` over all their seeds."""
    docs = [json.loads(Path(f).read_text()) for f in files]
    if any(d["settings"] != docs[0]["settings"] for d in docs):
        raise SystemExit("the files to merge were made with different settings")
    seeds = {k: v for d in docs for k, v in d["seeds"].items()}
    merged = {"settings": docs[0]["settings"], "seeds": seeds, "summary": summary(seeds)}
    Path(out).write_text(json.dumps(merged, indent=1))
    print(json.dumps(merged["summary"], indent=1))
    return merged


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="../shared/data/camvid")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--out", default="bench/results/prelabels.json")
    p.add_argument("--start-images", type=int, default=None,
                   help="seed set of the first N of the 10 whole images (default: all 10; the "
                        "product's start is its seed batch, 5)")
    p.add_argument("--images-per-step", type=int, default=10)
    args = p.parse_args()
    sim = al_simulation(args.data, images_per_step=args.images_per_step)
    cfg, pool_x, pool_y = sim.cfg, sim.pool_images, sim.pool_labels
    strategy = STRATEGIES["default"]
    policy = replace(strategy.policy, images=cfg.images_per_step)
    n = cfg.n_classes
    out = {"settings": {"data": args.data, "seeds": args.seeds, "strategy": "default",
                        "policy": policy.__dict__, "first_epochs": cfg.first_epochs,
                        "max_side": cfg.max_side, "mc_samples": cfg.mc_samples,
                        "start_images": args.start_images or cfg.init_images},
           "variants": list(VARIANTS), "seeds": {}}
    for seed in args.seeds:
        t0 = time.perf_counter()
        model, labeled, _, miou0 = sim.seed_start(seed, args.start_images)
        scorer = sim.scorer(model, labeled, seed)
        result = sim.step(scorer, strategy, policy, labeled, seed)
        weights = np.asarray(scorer.class_weights, dtype=np.float64)
        weights = np.where(weights > 0, weights, weights.max())
        right = dict.fromkeys(VARIANTS, 0)
        judged = mismatched = top2 = 0
        # the labeled superpixels (the seed set's): mean features and most frequent class
        cache = sim.superpixels(strategy.superpixels)
        bank, bank_labels = [], []
        for i, answer in labeled.items():
            sp = cache.get(pool_x[i])
            dominant = truth_dominant(sp, answer, n)
            means = superpixel_means(sp, features(model, pool_x[i], cfg.max_side))
            bank.append(means[dominant >= 0])
            bank_labels.append(dominant[dominant >= 0])
        bank, bank_labels = np.concatenate(bank), np.concatenate(bank_labels)
        for query in result.queries:
            image, truth = pool_x[query.key], pool_y[query.key]
            sp = query.superpixels
            h, w = sp.shape
            ids = np.array([r.superpixels[0] for r in query.regions])
            dominant = truth_dominant(sp, truth, n)[ids]
            keep = dominant >= 0
            judged += int(keep.sum())
            sizes = np.bincount(sp.ravel(), minlength=int(sp.max()) + 1).astype(np.int64)
            pairs = adjacent_pairs(sp)
            mc = probabilities(scorer, image)
            det = probabilities(scorer, image, mc=False)
            flipped = (mc + probabilities(scorer, image, flip=True)) / 2
            det_flipped = (det + probabilities(scorer, image, mc=False, flip=True)) / 2
            # the product's per-pixel classes: at the working resolution, resized nearest
            def classes(probs, power=1.0):
                c = (probs / weights[:, None, None] ** power).argmax(0).astype(np.uint8)
                return cv2.resize(c, (w, h), interpolation=cv2.INTER_NEAREST)
            base = majority(sp, classes(mc), n)
            labels = {
                "product": smoothed(majority(sp, classes(det_flipped), n), sizes, pairs, 2),
                "mc_mean": smoothed(base, sizes, pairs, 2),
                "majority": base,
                "soft": soft_vote(sp, full_size(mc / weights[:, None, None], h, w)),
                "no_prior": smoothed(majority(sp, classes(mc, 0.0), n), sizes, pairs, 2),
                "half_prior": smoothed(majority(sp, classes(mc, 0.5), n), sizes, pairs, 2),
                "deterministic": smoothed(majority(sp, classes(det), n), sizes, pairs, 2),
                "flip": smoothed(majority(sp, classes(flipped), n), sizes, pairs, 2),
                "smoothed_4": smoothed(base, sizes, pairs, 4),
                "strong_prior": smoothed(majority(sp, classes(mc, 1.5), n), sizes, pairs, 2),
                "deterministic_4": smoothed(majority(sp, classes(det), n), sizes, pairs, 4),
            }
            labels["soft_smoothed"] = smoothed(labels["soft"], sizes, pairs, 2)
            votes = np.zeros((len(sizes), n))
            means = superpixel_means(sp, features(model, image, cfg.max_side))
            votes[ids] = neighbour_votes(means[ids], bank, bank_labels, n)
            labels["neighbours"] = votes.argmax(1)
            corrected = det_flipped / weights[:, None, None]
            corrected /= corrected.sum(0, keepdims=True)
            soft = superpixel_means(sp, full_size(corrected, h, w).reshape(n, -1).T) + votes
            labels["soft_neighbours"] = soft.argmax(1)
            two = np.argsort(-soft[ids], axis=1)[:, :2]
            top2 += int((two == dominant[:, None]).any(1)[keep].sum())
            pushed = np.array([r.label for r in query.regions])
            mismatched += int((pushed != labels["product"][ids]).sum())  # should stay 0
            for name in VARIANTS:
                right[name] += int((labels[name][ids] == dominant)[keep].sum())
        out["seeds"][str(seed)] = {"seed_miou": miou0, "judged": judged, "right": right,
                                   "top2": top2, "labeled_superpixels": len(bank),
                                   "product_mismatches": mismatched,
                                   "accuracy": {k: v / judged for k, v in right.items()},
                                   "seconds": round(time.perf_counter() - t0, 1)}
        print(seed, {k: round(v / judged, 3) for k, v in right.items()}, flush=True)
    total = sum(s["judged"] for s in out["seeds"].values())
    out["pooled_accuracy"] = {k: sum(s["right"][k] for s in out["seeds"].values()) / total
                              for k in VARIANTS}
    out["pooled_top2"] = sum(s["top2"] for s in out["seeds"].values()) / total
    print(json.dumps(out["pooled_accuracy"], indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
