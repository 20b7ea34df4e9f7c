"""Why the strategies differ on Peanut: the labels they collected and what their models get right.

  python bench/peanut_labels.py [DATA_DIR] [CACHE_DIR]   (after bench/peanut_al.sh; ~3 minutes)

Reads the simulator's kept runs (CACHE_DIR/runs, the last step of each run of
bench/peanut_al.sh's 4-step protocol, and CACHE_DIR/seed_models) and writes
bench/results/peanut_labels.json:

- ``pool``: class shares of the pool's labels and of val's; the weed's connected parts
  (8-connected) against the size of one default superpixel (SLICO 300 at 720x960) and against the
  annotator's smallest drawn part (``ClickModel.min_part`` of the image).
- ``labels``: per strategy and seed, over its queried (partly labeled) images after step 4: the
  share of each image labeled, the true class shares of the labeled pixels, and per true class
  the share of its labeled pixels given another class (the parts under ``min_part`` that keep a
  region's label).
- ``iou``: per-class validation IoU of the seed model and of each run's step-4 model.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from dbsal_backend.engine.data import load_split
from dbsal_backend.engine.metrics import evaluate
from dbsal_backend.engine.networks import build_model
from dbsal_backend.simulator.annotator import ClickModel

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["background", "crop", "weed"]
STRATEGIES = ["default", "dbsal", "static", "random", "control"]


def pool_stats(pool_y, val_y) -> dict:
    h, w = pool_y[0].shape
    superpixel = h * w / 300
    min_part = ClickModel.min_part * h * w
    areas = []
    for label in pool_y:
        _, _, stats, _ = cv2.connectedComponentsWithStats((label == 2).astype(np.uint8), 8)
        areas += list(stats[1:, cv2.CC_STAT_AREA])
    areas = np.array(areas, dtype=np.float64)
    shares = lambda ys: (lambda c: (c / c.sum()).tolist())(
        sum(np.bincount(y.ravel(), minlength=3) for y in ys).astype(np.float64))
    return {"classes": CLASSES, "pool_class_shares": shares(pool_y),
            "val_class_shares": shares(val_y), "image_pixels": h * w,
            "superpixel_pixels": superpixel, "min_part_pixels": min_part,
            "weed_parts": len(areas), "weed_part_median_pixels": float(np.median(areas)),
            "weed_parts_smaller_than_superpixel": float((areas < superpixel).mean()),
            "weed_parts_smaller_than_min_part": float((areas < min_part).mean()),
            "weed_pixels_in_parts_smaller_than_superpixel":
                float(areas[areas < superpixel].sum() / areas.sum()),
            "weed_pixels_in_parts_smaller_than_min_part":
                float(areas[areas < min_part].sum() / areas.sum())}


def last_step(cache: Path, name: str, seed: int, pool: int) -> dict | None:
    """The run's kept state after step 4 (the protocol's last), or None."""
    for path in sorted(cache.glob(f"runs/{name}_{seed}_*.pt")):
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if saved["step"] == 4 and max(saved["keys"]) < pool and \
                len(saved["records"]) == 5 and saved["records"][0]["images"] == 10:
            return saved
    return None


def label_stats(saved: dict, pool_y) -> dict:
    confusion = np.zeros((3, 3), np.int64)
    covered = []
    for key, given in zip(saved["keys"], saved["labels"]):
        given = given.numpy()
        truth = pool_y[int(key)]
        m = given != 255
        if m.all():                    # a whole image: exact
            continue
        covered.append(float(m.mean()))
        confusion += np.bincount(truth[m].astype(np.int64) * 3 + given[m],
                                 minlength=9).reshape(3, 3)
    total = confusion.sum(1)
    return {"queried_images": len(covered),
            "labeled_share_of_image": float(np.mean(covered)) if covered else None,
            "true_class_shares": (total / total.sum()).tolist() if covered else None,
            "mislabeled_share": (1 - np.diag(confusion) / np.maximum(total, 1)).tolist()
            if covered else None,
            "confusion_true_by_given": confusion.tolist()}


def iou(state: dict, val_x, val_y) -> dict:
    model = build_model("efficientnet_lite0", 3, pretrained=False)
    model.load_state_dict(state)
    r = evaluate(model, val_x, val_y, 3, 240)
    return {"miou": float(r["miou"]), "iou": [float(x) for x in r["iou"]]}


def main(data: str, cache: str) -> dict:
    torch.set_num_threads(1)
    cache_dir = Path(cache)
    _, pool_y, _ = load_split(data, "train")
    val_x, val_y, _ = load_split(data, "val")
    result = {"pool": pool_stats(pool_y, val_y), "labels": {}, "iou": {}}
    for seed in (0, 1, 2):
        for name in STRATEGIES:
            saved = last_step(cache_dir, name, seed, len(pool_y))
            if saved is None:
                continue
            key = f"{name}_s{seed}"
            result["labels"][key] = label_stats(saved, pool_y)
            result["iou"][key] = iou(saved["model"], val_x, val_y)
            if f"seed_s{seed}" not in result["iou"]:
                step0 = saved["records"][0]["miou"]
                for path in cache_dir.glob("seed_models/*.pt"):
                    s = torch.load(path, map_location="cpu", weights_only=True)
                    if abs(float(s["miou"]) - step0) < 1e-9:
                        result["iou"][f"seed_s{seed}"] = iou(s["state"], val_x, val_y)
                        break
            print(key, result["labels"][key].get("mislabeled_share"), result["iou"][key],
                  flush=True)
    out = ROOT / "bench/results/peanut_labels.json"
    out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(ROOT.parent / "shared/data/peanut"),
         sys.argv[2] if len(sys.argv) > 2 else str(ROOT / ".sim-cache"))
