"""How long a person waits for the first queried regions after answering the start, and what
the first model is worth: the backend's first run, as it runs it, on this machine's CPU.

    OMP_NUM_THREADS=1 .venv/bin/python bench/train_time.py [--data ../shared/data/camvid]
        [--seeds 0] [--candidates 240:120 240:60 512:30] [--start-images 5] [--threads 1]
        [--out bench/results/train_time.json]

The start is the simulator's (``--seeds``): the first ``--start-images`` (default: the backend's
``DBSAL_INITIAL_BATCH``) of the 10 random CamVid training images of ``bench/camvid_al.sh``'s
seed set, labeled whole; the rest of the pool is unlabeled. ``train_time.json`` was measured
with ``--start-images 10`` (the start before the cheaper one), ``train_time_start.json`` with
the default. For each candidate ``MAX_SIDE:FIRST_EPOCHS`` (``DBSAL_MAX_SIDE``,
``DBSAL_FIRST_EPOCHS``; the other settings are the backend's defaults), the first run is timed
as the backend runs it: the network from ImageNet weights, trained on the start
(:func:`~dbsal_backend.engine.training.fit`), then the step
(:func:`~dbsal_backend.engine.active.active_step`: MC-dropout scoring of every unlabeled image,
superpixels of the queried ones, their regions). Downloads and Label Studio's side are not
counted (milliseconds per image on one machine). The first model is scored on CamVid val
(101 images, its mIoU against the full-size labels). A candidate marked ``~`` (e.g.
``~512:120``) is not run in full: its epochs are timed (``--timed-epochs`` after a warm-up)
and the run is extrapolated, and it has no mIoU.

Output: per candidate and seed ``train_seconds``, ``step_seconds``, ``minutes`` (both),
``miou``, the step's queried images and regions; ``settings``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dbsal_backend.engine.active import active_step  # noqa: E402
from dbsal_backend.engine.data import fit_side, load_split, resize_nearest  # noqa: E402
from dbsal_backend.engine.devices import pick_device  # noqa: E402
from dbsal_backend.engine.metrics import evaluate  # noqa: E402
from dbsal_backend.engine.networks import build_model  # noqa: E402
from dbsal_backend.engine.scoring import Scorer  # noqa: E402
from dbsal_backend.engine.superpixels import slic  # noqa: E402
from dbsal_backend.engine.training import class_weights, fit  # noqa: E402
from dbsal_backend.server.settings import Settings  # noqa: E402
from dbsal_backend.simulator.loop import Simulation  # noqa: E402
from dbsal_backend.simulator.records import SimConfig  # noqa: E402

N_CLASSES, VOID = 11, 11


def first_run(settings: Settings, pool_x, pool_y, val_x, val_y, start: list[int],
              max_side: int, epochs: int, device, extrapolate: int | None = None) -> dict:
    """One candidate's first run: train on ``start`` and step over the rest of the pool."""
    recipe = dataclasses.replace(settings.recipe(first=True), epochs=epochs)
    images = [fit_side(pool_x[i], max_side) for i in start]
    labels = [resize_nearest(pool_y[i], *im.shape[:2]) for i, im in zip(start, images)]
    torch.manual_seed(settings.seed)
    model = build_model(settings.arch, N_CLASSES, pretrained=settings.pretrained)
    if extrapolate:
        fit(model, images, labels, dataclasses.replace(recipe, epochs=1), device)  # warm-up
        times = []
        for k in range(extrapolate):
            t0 = time.perf_counter()
            fit(model, images, labels, dataclasses.replace(recipe, epochs=1, seed=k + 1), device)
            times.append(time.perf_counter() - t0)
        train_seconds = statistics.median(times) * epochs
    else:
        t0 = time.perf_counter()
        fit(model, images, labels, recipe, device)
        train_seconds = time.perf_counter() - t0
    model.eval()
    prior = class_weights(labels, N_CLASSES) if recipe.class_weighted else None
    scorer = Scorer(model, N_CLASSES, heuristic=settings.uncertainty,
                    mc_samples=settings.mc_samples, max_side=max_side, seed=settings.seed,
                    class_weights=prior, batch_size=settings.score_batch_size)
    params = settings.slic_params()
    unlabeled = [i for i in range(len(pool_x)) if i not in set(start)]
    t0 = time.perf_counter()
    step = active_step(((i, pool_x[i]) for i in unlabeled), scorer,
                       lambda image: slic(image, params), settings.query_policy(polygons=True),
                       seed=settings.seed)
    step_seconds = time.perf_counter() - t0
    regions = [len(q.regions) for q in step.queries]
    return {
        "max_side": max_side, "first_epochs": epochs, "size": list(images[0].shape[:2]),
        "extrapolated": bool(extrapolate),
        "train_seconds": round(train_seconds, 1), "step_seconds": round(step_seconds, 1),
        "minutes": round((train_seconds + step_seconds) / 60, 2),
        "miou": None if extrapolate else float(evaluate(model, val_x, val_y, N_CLASSES,
                                                         max_side)["miou"]),
        "scored": len(unlabeled), "queried": len(step.queries),
        "regions_per_image_median": float(np.median(regions)) if regions else None,
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data/camvid")
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--candidates", nargs="+", default=["240:120", "240:60", "512:30"],
                   help="MAX_SIDE:FIRST_EPOCHS; a leading ~ extrapolates from timed epochs")
    p.add_argument("--timed-epochs", type=int, default=3)
    p.add_argument("--start-images", type=int, default=None,
                   help="whole images of the start (default: DBSAL_INITIAL_BATCH)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--out", default="bench/results/train_time.json")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    settings = Settings()
    device = pick_device("cpu")
    pool_x, pool_y, _ = load_split(args.data, "train", ignore_value=VOID)
    val_x, val_y, _ = load_split(args.data, "val", ignore_value=VOID)
    seed_sets = Simulation(pool_x, pool_y, val_x, val_y,
                           SimConfig(n_classes=N_CLASSES, init_images=10))
    start_images = args.start_images or settings.seed_tasks()
    out = Path(args.out)
    result = {"runs": [], "settings": {
        "data": args.data, "pool_images": len(pool_x), "val_images": len(val_x),
        "image_size": list(pool_x[0].shape[:2]), "arch": settings.arch,
        "start_images": start_images, "mc_samples": settings.mc_samples,
        "step_images": settings.step_size, "batch_size": settings.batch_size,
        "device": str(device), "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(), "cpus": __import__("os").cpu_count(),
        "torch": torch.__version__}}
    for seed in args.seeds:
        start = seed_sets.seed_set(seed, start_images)
        for candidate in args.candidates:
            extrapolate = candidate.startswith("~")
            side, epochs = (int(v) for v in candidate.lstrip("~").split(":"))
            run = first_run(settings, pool_x, pool_y, val_x, val_y, start, side, epochs, device,
                            args.timed_epochs if extrapolate else None)
            run["seed"] = seed
            result["runs"].append(run)
            print(json.dumps(run), flush=True)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
