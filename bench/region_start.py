"""A start with no whole images: regions in many images, answered with their class.

    OMP_NUM_THREADS=1 .venv/bin/python bench/region_start.py --seeds 0 [--regions 40] \\
        [--out bench/results/region_start_camvid_s0.json]

Issue 24 names the cheapest start, "fewer whole images, or none (regions in many images from
the first step, answered with their class)". Before any model there is nothing to rank
superpixels by, nor a guess to pre-label them with, so this start asks ``--regions`` random
superpixels (the product's SLICO 300) of each of as many random pool images as the product's
start costs in clicks, each answered with its dominant class as the default's answers are
(:meth:`SimulatedAnnotator.review`, ``repaint=False``) and priced as a relabel (2 clicks: select
the region, click its class), since no pre-label can be right. Arms, per seed (the same seeds,
seed sets and seed models as ``bench/camvid_al.sh``'s default, kept in ``.sim-cache``):

``whole5``        the product's start: its seed batch of 5 whole images drawn as polygons, the
                  seed model trained 120 epochs on them (the simulator's cached seed model)
``regions``       the region start at the same clicks, a model trained 120 epochs on it
``regions_fast``  the same labels, trained for the epochs that make as many image passes as
                  ``whole5``'s (600): the first model as soon as ``whole5``'s
``hybrid``        the first ``--whole`` (2) whole images of the seed set, then random regions
                  as above for the rest of the clicks; ``regions_fast``'s image passes
``colour``        as ``regions_fast``, each image's regions the superpixels most different in
                  colour (:func:`~dbsal_backend.engine.start.colour_regions`), not random:
                  more of the rare classes, before any model (``--arms hybrid colour``)

For each: the first model's mIoU on val and its training time, then the product's step 1 from
it (``default``: 20 queried images, 40 regions each, dominant-class answers), the step-1
pre-labels right, and the step's fine-tuning (20 epochs, trimming the region answers, as the
default does) with its mIoU and clicks. Writes ``--out`` after each seed with a ``summary``:
means and the paired differences from ``whole5`` (``--merge`` joins files of other seeds).

Peanut: ``--data ../shared/data/peanut --n-classes 3 --ignore-value -1 --images-per-step 10``.
The simulator's strategy ``region_start`` is the same start as the backend would serve it (a
fixed number of images, a draw of its own), for the long protocols.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from dbsal_backend.engine.constants import IGNORE_INDEX  # noqa: E402
from dbsal_backend.simulator import STRATEGIES  # noqa: E402
from dbsal_backend.engine.start import start_regions  # noqa: E402
from dbsal_backend.simulator.records import Tally  # noqa: E402
from prelabels import al_simulation, merge_seed_files  # noqa: E402

ARMS = ("whole5", "regions", "regions_fast", "hybrid", "colour")


def budget_start(sim, strategy, budget: int, k: int, seed: int, colour: bool = False,
                 labeled: dict[int, np.ndarray] | None = None, tally: Tally | None = None
                 ) -> tuple[dict[int, np.ndarray], Tally]:
    """Random pool images not in ``labeled``, ``k`` regions each (random, or with ``colour``
    the most different in colour), answered with their dominant class, until the clicks
    (``tally``'s included) reach ``budget``."""
    rng = np.random.default_rng(seed + 3000)
    cache = sim.superpixels(strategy.superpixels)
    labeled = dict(labeled or {})
    tally = copy.deepcopy(tally) if tally is not None else Tally()
    for i in rng.permutation(len(sim.pool_images)):
        if tally.clicks >= budget:
            break
        if int(i) in labeled:
            continue
        superpixels = cache.get(sim.pool_images[i])
        regions = start_regions("colour" if colour else "random", sim.pool_images[i],
                                superpixels, k, rng, sim.cfg.n_classes)
        answer = sim.annotator.review(sim.pool_labels[i], superpixels, regions, repaint=False)
        labeled[int(i)] = answer.labels
        tally.add(answer)
    return labeled, tally


def step_one(sim, strategy, model, labeled: dict[int, np.ndarray], tally: Tally,
             seed: int) -> dict:
    """The product's step 1 from ``model``: query, answers, fine-tuning (copies, nothing of the
    caller's changes)."""
    labeled, tally = dict(labeled), copy.deepcopy(tally)
    policy = replace(strategy.policy, images=sim.cfg.images_per_step)
    t0 = time.perf_counter()
    result = sim.step(sim.scorer(model, labeled, seed), strategy, policy, labeled, seed)
    right = judged = 0
    for query in result.queries:
        answer = sim.annotator.review(sim.pool_labels[query.key], query.superpixels,
                                      query.regions, repaint=strategy.answers == "repaint")
        labeled[query.key] = answer.labels
        tally.add(answer)
        right += answer.prelabels_right
        judged += answer.prelabels_judged
    tuned = sim.train(copy.deepcopy(model), labeled, seed + 1, None, strategy)
    return {"miou": sim.evaluate(tuned), "clicks": tally.clicks, "regions": tally.regions,
            "prelabels_right": right, "prelabels_judged": judged,
            "seconds": round(time.perf_counter() - t0, 1)}


def starts(sim, strategy, seed: int, k: int, whole: int, labeled: dict[int, np.ndarray],
           tally: Tally) -> dict:
    """Each arm's start (its labels and their cost, made when called) at the clicks of the
    whole images ``labeled`` (the seed set's, costing ``tally``)."""
    few = {i: labeled[i] for i in sim.seed_set(seed, whole)}
    few_tally = Tally()
    for i in few:
        few_tally.add(sim.whole(i))
    regions = lambda: budget_start(sim, strategy, tally.clicks, k, seed)  # noqa: E731
    return {"whole5": lambda: (labeled, tally), "regions": regions, "regions_fast": regions,
            "hybrid": lambda: budget_start(sim, strategy, tally.clicks, k, seed,
                                           labeled=few, tally=few_tally),
            "colour": lambda: budget_start(sim, strategy, tally.clicks, k, seed, True)}


def class_shares(labeled: dict[int, np.ndarray], n_classes: int) -> list[float]:
    """Each class's share of the labeled pixels of a start."""
    counts = sum(np.bincount(v[v != IGNORE_INDEX].ravel(), minlength=n_classes)[:n_classes]
                 for v in labeled.values())
    return (counts / max(1, counts.sum())).round(4).tolist()


def run_seed(sim, strategy, seed: int, k: int, arms: list[str], whole: int,
             shares_only: bool = False) -> dict:
    """The arms' rows of ``seed`` (with ``shares_only``: only each start's class shares)."""
    row: dict = {}
    model, labeled, tally, miou = sim.seed_start(seed, strategy.init_images)
    passes = sim.cfg.first_epochs * len(labeled)
    made = starts(sim, strategy, seed, k, whole, labeled, tally)
    for arm in arms:
        start, start_tally = made[arm]()
        if shares_only:
            row[arm] = {"class_shares": class_shares(start, sim.cfg.n_classes)}
            continue
        if arm == "whole5":
            first, epochs, seconds = model, sim.cfg.first_epochs, None
        else:
            epochs = (sim.cfg.first_epochs if arm == "regions"
                      else max(1, round(passes / len(start))))
            t0 = time.perf_counter()
            first = sim.train(sim.new_model(seed), start, seed, epochs).eval()
            seconds = round(time.perf_counter() - t0, 1)
            miou = sim.evaluate(first)
        row[arm] = {"images": len(start), "clicks": start_tally.clicks,
                    "regions": start_tally.regions, "pixels": start_tally.pixels,
                    "first_miou": miou, "epochs": epochs, "train_seconds": seconds,
                    "class_shares": class_shares(start, sim.cfg.n_classes),
                    "step1": step_one(sim, strategy, first, start, start_tally, seed)}
        print(f"seed {seed} {arm}: {row[arm]}", flush=True)
    return row


def summary(seeds: dict) -> dict:
    """Means over the seeds, and each arm minus ``whole5`` paired per seed."""
    out: dict = {}
    rows = list(seeds.values())
    for arm in ARMS:
        shares = [r[arm]["class_shares"] for r in rows if "class_shares" in r.get(arm, {})]
        have = [r[arm] for r in rows if "step1" in r.get(arm, {})]
        if not have:
            continue
        right = sum(r["step1"]["prelabels_right"] for r in have)
        judged = sum(r["step1"]["prelabels_judged"] for r in have)
        out[arm] = {"seeds": len(have),
                    "clicks": float(np.mean([r["clicks"] for r in have])),
                    "first_miou": float(np.mean([r["first_miou"] for r in have])),
                    "step1_miou": float(np.mean([r["step1"]["miou"] for r in have])),
                    "step1_clicks": float(np.mean([r["step1"]["clicks"] for r in have])),
                    "step1_prelabels_right": right / judged if judged else None,
                    "class_shares": (np.mean(shares, axis=0).round(4).tolist()
                                     if shares else None)}
        if arm != "whole5":
            paired = [r for r in rows if "step1" in r.get(arm, {}) and "step1" in r["whole5"]]
            for key, get in (("first_miou", lambda a: a["first_miou"]),
                             ("step1_miou", lambda a: a["step1"]["miou"])):
                diffs = np.array([get(r[arm]) - get(r["whole5"]) for r in paired])
                out[arm][f"{key}_minus_whole5"] = {
                    "mean": float(diffs.mean()) if diffs.size else None,
                    "per_seed": diffs.round(4).tolist()}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="../shared/data/camvid")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--regions", type=int, default=40, help="random regions per image")
    p.add_argument("--images-per-step", type=int, default=20)
    p.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS[:3]))
    p.add_argument("--whole", type=int, default=2, help="hybrid: whole images of the seed set")
    p.add_argument("--n-classes", type=int, default=11)
    p.add_argument("--ignore-value", type=int, default=11, help="the void value; -1: none")
    p.add_argument("--out", default="bench/results/region_start_camvid.json")
    p.add_argument("--shares-only", action="store_true",
                   help="only each start's class shares of the labeled pixels (no training)")
    p.add_argument("--merge", nargs="+", metavar="JSON",
                   help="only merge these results files (same settings) into --out")
    args = p.parse_args()
    if args.merge:
        merge_seed_files(args.merge, args.out, summary)
        return
    sim = al_simulation(args.data, images_per_step=args.images_per_step,
                        n_classes=args.n_classes,
                        ignore_value=None if args.ignore_value < 0 else args.ignore_value)
    strategy = STRATEGIES["default"]
    out_path = Path(args.out)
    out = json.loads(out_path.read_text()) if out_path.exists() else {"seeds": {}}
    out["settings"] = {"data": args.data, "strategy": "default", "regions": args.regions,
                       "images_per_step": args.images_per_step,
                       "arms": sorted(set(out.get("settings", {}).get("arms", [])) | set(args.arms),
                                      key=ARMS.index), "whole": args.whole,
                       "first_epochs": sim.cfg.first_epochs, "max_side": sim.cfg.max_side,
                       "relabel_clicks": sim.cfg.clicks.relabel_clicks,
                       "n_classes": args.n_classes, "torch_threads": torch.get_num_threads()}
    for seed in args.seeds:
        row = out["seeds"].setdefault(str(seed), {})  # arms and figures made before are kept
        made = run_seed(sim, strategy, seed, args.regions, args.arms, args.whole,
                        args.shares_only)
        for arm, figures in made.items():
            row.setdefault(arm, {}).update(figures)
        out["summary"] = summary(out["seeds"])
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(out, indent=1))
    print(json.dumps(out["summary"], indent=1))


if __name__ == "__main__":
    main()
