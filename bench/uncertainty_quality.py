"""How well does superpixel uncertainty point at the model's errors? (diagnostic for camvid_al)

    .venv/bin/python bench/uncertainty_quality.py --data ../shared/data/camvid

Trains the seed-set model exactly as ``bench/camvid_al.sh`` does at step 0 (10 random whole
images, half scale), then on the validation images, per superpixel: MC-dropout uncertainty
(mean over its pixels, for each heuristic) against its error rate (misclassified labeled pixels).
Reports, per heuristic and superpixel count:
- Spearman rank correlation between superpixel uncertainty and error rate;
- the natural-breaks high group: its share of superpixels and of pixels, and the share of all
  errors that fall inside it (an ideal selector catches most errors with few pixels).
Writes ``bench/results/uncertainty_quality.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dbsal_backend.constants import IGNORE_INDEX  # noqa: E402
from dbsal_backend.data import load_split  # noqa: E402
from dbsal_backend.selection import natural_breaks_split, superpixel_scores  # noqa: E402
from dbsal_backend.simulate import Simulation, SimulationConfig  # noqa: E402
from dbsal_backend.superpixels import SlicParams, slic  # noqa: E402
from dbsal_backend.uncertainty import HEURISTICS, mc_dropout  # noqa: E402


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    return float(np.corrcoef(ra, rb)[0, 1])


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--segments", type=int, nargs="+", default=[300, 1200])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench/results/uncertainty_quality.json")
    args = p.parse_args(argv)
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

    started = time.perf_counter()
    tr_img, tr_lbl, _ = load_split(args.data, "train", ignore_value=11, scale=0.5)
    va_img, va_lbl, _ = load_split(args.data, "val", ignore_value=11, scale=0.5)
    cfg = SimulationConfig(n_classes=11, epochs_initial=12, batch_size=8, lr=1e-3,
                           cache_dir=".sim-cache")
    sim = Simulation(tr_img, tr_lbl, va_img, va_lbl, cfg)
    labeled = {i: sim.oracle.whole_image(i) for i in sim.seed_set(args.seed)}
    model, miou0 = sim._initial_model(args.seed, labeled)

    per = {(h, n): {"u": [], "err": [], "errors": [], "px": []} for h in HEURISTICS
           for n in args.segments}
    for img, lbl in zip(va_img, va_lbl):
        x = torch.as_tensor(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float().div(255)
        stats = mc_dropout(model, x, n_samples=20, mode="head")
        pred = stats.mean_probs[0].argmax(0).numpy()
        valid = lbl != IGNORE_INDEX
        wrong = (pred != lbl) & valid
        maps = {h: f(stats)[0].numpy() for h, f in HEURISTICS.items()}
        for n in args.segments:
            sp = slic(img, SlicParams(n_segments=n))
            count = np.bincount(sp.ravel(), weights=valid.ravel())
            errors = np.bincount(sp.ravel(), weights=wrong.ravel())
            size = np.bincount(sp.ravel())
            for h, u in maps.items():
                rec = per[(h, n)]
                scores = superpixel_scores(u, sp)
                high = natural_breaks_split(scores)
                keep = count > 0
                rec["u"].append(scores[keep])
                rec["err"].append(errors[keep] / count[keep])
                rec["errors"].append((errors[high].sum(), errors.sum()))
                rec["px"].append((size[high].sum(), size.sum(), high.sum(), high.size))

    results = {}
    for (h, n), rec in per.items():
        u, err = np.concatenate(rec["u"]), np.concatenate(rec["err"])
        e_in, e_all = np.sum(rec["errors"], axis=0)
        px_in, px_all, sp_in, sp_all = np.sum(rec["px"], axis=0)
        results[f"{h}_sp{n}"] = {
            "heuristic": h, "n_segments": n,
            "spearman_uncertainty_vs_error": round(spearman(u, err), 3),
            "high_group_superpixel_share": round(float(sp_in / sp_all), 3),
            "high_group_pixel_share": round(float(px_in / px_all), 3),
            "errors_caught_share": round(float(e_in / e_all), 3),
            "errors_per_pixel_lift": round(float((e_in / e_all) / (px_in / px_all)), 2),
        }
    out = {"seed_model_val_miou": round(miou0, 4), "val_images": len(va_img),
           "results": results, "seconds": round(time.perf_counter() - started, 1)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"seed model val mIoU {miou0:.3f}")
    print(f"{'case':22s} {'spearman':>8s} {'sp share':>8s} {'px share':>8s} {'errors':>7s} {'lift':>5s}")
    for k, r in results.items():
        print(f"{k:22s} {r['spearman_uncertainty_vs_error']:8.3f} "
              f"{r['high_group_superpixel_share']:8.3f} {r['high_group_pixel_share']:8.3f} "
              f"{r['errors_caught_share']:7.3f} {r['errors_per_pixel_lift']:5.2f}")
    return out


if __name__ == "__main__":
    main()
