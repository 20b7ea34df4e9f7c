"""How wrong dominant-class answers are, and whether leaving out region edges helps: on ground
truth alone (no model), over every superpixel of some pool images.

    OMP_NUM_THREADS=1 .venv/bin/python bench/answer_noise.py [--images 15]
        [--out bench/results/answer_noise.json]

For CamVid and Peanut (``../shared/data``), ``--images`` random training images (seed 0) are cut
into the default superpixels (SLICO, 300); each superpixel is answered with its dominant true
class, as a person answering it with one class would. Per band width ``w`` (pixels within ``w``
of another superpixel left out of training, 0: none): ``wrong`` is the share of the kept
labeled pixels whose answer is not their true class, ``kept`` the share of labeled pixels kept.
Output: ``{data set: {w: {"wrong", "kept"}}, "settings"}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dbsal_backend.engine.data import load_split  # noqa: E402
from dbsal_backend.engine.superpixels import slic  # noqa: E402
from dbsal_backend.server.settings import Settings  # noqa: E402

DATA = {"camvid": (11, 11), "peanut": (3, None)}  # classes, void value
BANDS = (0, 1, 2, 3, 5)


def noise(images, labels, n_classes: int, params) -> dict:
    totals = {w: [0, 0, 0] for w in BANDS}  # wrong kept, right kept, labeled
    for image, truth in zip(images, labels):
        sp = slic(image, params)
        valid = truth < n_classes
        k = int(sp.max()) + 1
        counts = np.bincount(sp[valid] * n_classes + truth[valid],
                             minlength=k * n_classes).reshape(k, n_classes)
        answer = counts.argmax(1)[sp]
        for w in BANDS:
            keep = valid
            if w:
                kernel = np.ones((2 * w + 1, 2 * w + 1), np.uint8)
                ids = sp.astype(np.float32)
                keep = valid & (cv2.dilate(ids, kernel) == cv2.erode(ids, kernel))
            totals[w][0] += int((keep & (answer != truth)).sum())
            totals[w][1] += int((keep & (answer == truth)).sum())
            totals[w][2] += int(valid.sum())
    return {str(w): {"wrong": bad / (bad + good), "kept": (bad + good) / n}
            for w, (bad, good, n) in totals.items()}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shared", default="../shared/data")
    p.add_argument("--images", type=int, default=15)
    p.add_argument("--out", default="bench/results/answer_noise.json")
    args = p.parse_args(argv)
    params = Settings().slic_params()
    result = {"settings": {"images": args.images, "superpixels": repr(params), "seed": 0,
                           "bands": list(BANDS)}}
    for name, (n_classes, void) in DATA.items():
        images, labels, _ = load_split(Path(args.shared) / name, "train", ignore_value=void)
        pick = np.random.default_rng(0).choice(len(images), args.images, replace=False)
        result[name] = noise([images[i] for i in pick], [labels[i] for i in pick], n_classes,
                             params)
        print(name, json.dumps(result[name]), flush=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
