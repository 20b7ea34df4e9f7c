"""How long the backend's first training run takes: the product's default recipe and network.

    OMP_NUM_THREADS=2 .venv/bin/python bench/train_time.py [--data ../shared/data/camvid]
        [--images 10] [--epochs 3] [--out bench/results/train_time.json]

Trains the default network (``DBSAL_MODEL``) with the settings' first-run recipe on the first
``--images`` CamVid training images at their full 360x480 (below the default
``DBSAL_MAX_SIDE``, so not resized), for ``--epochs`` timed epochs after one warm-up epoch, and
extrapolates to ``DBSAL_FIRST_EPOCHS`` and ``DBSAL_EPOCHS``. The README's statement of the
first run's duration comes from here. Output: {"seconds_per_epoch", "first_run_minutes",
"later_run_minutes" (for the same number of images), "settings"}.
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

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dbsal_backend import training  # noqa: E402

from dbsal_backend.engine import devices

from dbsal_backend.engine import networks
from dbsal_backend.engine.data import fit_side, load_split, resize_nearest  # noqa: E402
from dbsal_backend.server.settings import Settings  # noqa: E402


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data/camvid")
    p.add_argument("--images", type=int, default=10)
    p.add_argument("--epochs", type=int, default=3, help="timed epochs (after one warm-up)")
    p.add_argument("--out", default="bench/results/train_time.json")
    args = p.parse_args(argv)

    settings = Settings()
    images, labels, _ = load_split(args.data, "train", ignore_value=11)
    images = [fit_side(im, settings.max_side) for im in images[:args.images]]
    labels = [resize_nearest(lb, *im.shape[:2]) for lb, im in zip(labels, images)]
    model = networks.build_model(settings.arch, n_classes=11, pretrained=True)
    device = devices.pick_device(settings.device)
    recipe = dataclasses.replace(settings.recipe(first=True), epochs=1)
    training.fit(model, images, labels, recipe, device)  # warm-up
    times = []
    for epoch in range(args.epochs):
        start = time.perf_counter()
        training.fit(model, images, labels, dataclasses.replace(recipe, seed=epoch + 1), device)
        times.append(time.perf_counter() - start)
    per_epoch = statistics.median(times)
    result = {
        "seconds_per_epoch": round(per_epoch, 2),
        "epoch_seconds": [round(t, 2) for t in times],
        "first_run_minutes": round(per_epoch * settings.first_epochs / 60, 1),
        "later_run_minutes": round(per_epoch * settings.epochs / 60, 1),
        "settings": {
            "images": len(images), "size": list(images[0].shape[:2]), "arch": settings.arch,
            "first_epochs": settings.first_epochs, "epochs": settings.epochs,
            "batch_size": recipe.batch_size, "device": str(device),
            "torch_threads": torch.get_num_threads(), "machine": platform.machine(),
            "torch": torch.__version__,
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
