"""How wrong dominant-class answers are, whether leaving out region edges helps, and how other
superpixel settings do: on ground truth alone (no model), over every superpixel of some pool
images.

    OMP_NUM_THREADS=1 .venv/bin/python bench/answer_noise.py [--images 15]
        [--out bench/results/answer_noise.json]

For CamVid and Peanut (``../shared/data``), ``--images`` random training images (seed 0) are cut
into the default superpixels (SLICO, 300); each superpixel is answered with its dominant true
class, as a person answering it with one class would. Per band width ``w`` (pixels within ``w``
of another superpixel left out of training, 0: none): ``wrong`` is the share of the kept
labeled pixels whose answer is not their true class, ``kept`` the share of labeled pixels kept.

The same images cut by other superpixel settings (``VARIANTS``: SLIC with lower compactness,
which follows colour edges more closely, MSLIC, and SLICO at other counts), each superpixel
answered with its dominant class: ``wrong`` as above (no band), ``mixed`` the share of
superpixels whose dominant class holds less than 90% of their labeled pixels, ``pixels`` the
labeled pixels a superpixel holds (what one answer labels), ``regions`` superpixels per image,
``vertices`` the median corners of a superpixel's outline as the backend draws it as a polygon
(``POLYGON_TOLERANCE``), ``seconds`` per image to segment.

Output: ``{data set: {w: {"wrong", "kept"}}, "superpixels": {data set: {variant: {...}}},
"settings"}``.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dbsal_backend.engine.data import load_split  # noqa: E402
from dbsal_backend.engine.regions import dominant_classes  # noqa: E402
from dbsal_backend.engine.superpixels import slic  # noqa: E402
from dbsal_backend.labelstudio.polygons import mask_outlines  # noqa: E402
from dbsal_backend.labelstudio.predictions import POLYGON_TOLERANCE  # noqa: E402
from dbsal_backend.server.settings import Settings  # noqa: E402

DATA = {"camvid": (11, 11), "peanut": (3, None)}  # classes, void value
BANDS = (0, 1, 2, 3, 5)
#: Superpixel settings compared with the default's (name: changes to it).
VARIANTS = {
    "default": {},
    "SLIC, compactness 10": {"algorithm": "SLIC", "ruler": 10.0},
    "SLIC, compactness 5": {"algorithm": "SLIC", "ruler": 5.0},
    "SLIC, compactness 2.5": {"algorithm": "SLIC", "ruler": 2.5},
    "MSLIC, compactness 10": {"algorithm": "MSLIC", "ruler": 10.0},
    "SLICO, 150": {"n_segments": 150},
    "SLICO, 600": {"n_segments": 600},
}


def answers(sp: np.ndarray, truth: np.ndarray, n_classes: int):
    """Each pixel's dominant-class answer (its superpixel's most frequent true class, as the
    engine judges it) and the mask of labeled pixels."""
    classes = dominant_classes(sp, truth, int(sp.max()) + 1, n_classes)
    return classes[sp], truth < n_classes


def noise(images, labels, n_classes: int, params) -> dict:
    totals = {w: [0, 0, 0] for w in BANDS}  # wrong kept, right kept, labeled
    for image, truth in zip(images, labels):
        sp = slic(image, params)
        answer, valid = answers(sp, truth, n_classes)
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


def compare(images, labels, n_classes: int, params, outlines: int = 40) -> dict:
    """The dominant-class answers of each of :data:`VARIANTS` (changes to ``params``); the
    outlines of ``outlines`` random superpixels per image are drawn for ``vertices``."""
    rng = np.random.default_rng(0)
    out = {}
    for name, changes in VARIANTS.items():
        variant = replace(params, **changes)
        wrong = labeled = 0
        regions, mixed, pixels, vertices, seconds = [], [], [], [], []
        for image, truth in zip(images, labels):
            start = time.perf_counter()
            sp = slic(image, variant)
            seconds.append(time.perf_counter() - start)
            answer, valid = answers(sp, truth, n_classes)
            wrong += int((valid & (answer != truth)).sum())
            labeled += int(valid.sum())
            count = int(sp.max()) + 1
            held = np.bincount(sp[valid], minlength=count)
            right = np.bincount(sp[valid], weights=(answer == truth)[valid], minlength=count)
            right, held = right[held > 0], held[held > 0]
            regions.append(len(held))
            pixels.extend(held.tolist())
            mixed.extend((right < 0.9 * held).tolist())
            tolerance = POLYGON_TOLERANCE * max(sp.shape)
            for k in rng.choice(count, min(outlines, count), replace=False):
                parts = mask_outlines(sp == k, tolerance, "slit") or []
                vertices.append(sum(len(points) for points in parts))
        out[name] = {"settings": repr(variant), "wrong": wrong / labeled,
                     "mixed": float(np.mean(mixed)), "pixels": float(np.mean(pixels)),
                     "regions": float(np.mean(regions)), "vertices": float(np.median(vertices)),
                     "seconds": float(np.mean(seconds))}
        print(name, json.dumps(out[name]), flush=True)
    return out


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
    result["superpixels"] = {}
    for name, (n_classes, void) in DATA.items():
        images, labels, _ = load_split(Path(args.shared) / name, "train", ignore_value=void)
        pick = np.random.default_rng(0).choice(len(images), args.images, replace=False)
        images, labels = [images[i] for i in pick], [labels[i] for i in pick]
        result[name] = noise(images, labels, n_classes, params)
        print(name, json.dumps(result[name]), flush=True)
        result["superpixels"][name] = compare(images, labels, n_classes, params)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
