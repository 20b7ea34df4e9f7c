"""Offline active-learning simulator: the DBSAL loop against a labeled data set.

An *oracle* answers every query from ground truth, so label efficiency can be measured without
people: ``python -m dbsal_backend.simulate --data DIR --out results.json --plot results.png``.

Data layout: ``DIR/{train,val}/images/*`` and ``DIR/{train,val}/labels/<stem>.png`` (class-index
PNGs). ``train`` is the unlabeled pool, ``val`` scores each step (mIoU).

Strategies (all start from the same random seed set of whole images for a given seed):

``dbsal``   top-K images by mean pixel uncertainty; per image, the superpixels of the high group
            of the exact two-class natural-breaks split are queried (dynamic budget).
``static``  the same images; per image, the same top fraction of superpixels (static budget).
``random``  K random whole images per step.
``full``    full supervision on the whole pool (one point).

Per step it records images, superpixels and pixels labeled (pixels as a fraction of the pool) and
the validation mIoU.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .constants import IGNORE_INDEX
from .data import SegmentationDataset, load_split
from .networks import build_model
from .selection import random_images, rank_images, split_superpixels, superpixel_scores
from .superpixels import SlicParams, SuperpixelCache
from .training import TrainConfig, evaluate, train
from .uncertainty import image_scores, mc_dropout, pixel_uncertainty

log = logging.getLogger(__name__)

STRATEGIES = ("dbsal", "static", "random", "full")
ORACLE_MODES = ("full", "dominant")


# --------------------------------------------------------------------------------------------
# The oracle: answers queries from ground truth
# --------------------------------------------------------------------------------------------
class Oracle:
    """Answers label queries from ground-truth label maps.

    Parameters
    ----------
    labels : list of HxW integer arrays
        Ground truth, ``IGNORE_INDEX`` where the data set has no label (void).
    superpixels : list of HxW int32 arrays
        The superpixels of each image (ids ``0..n-1``).
    mode : {"full", "dominant"}
        ``"full"``: the exact ground truth inside each queried superpixel (the authors'
        simulation). ``"dominant"``: one class per superpixel, its most frequent labeled class,
        as a person confirming a pre-labeled region would answer (Cai et al. 2021).
    n_classes : int
        Number of classes (needed for the dominant mode).
    """

    def __init__(self, labels, superpixels, mode: str = "full", n_classes: int | None = None):
        if mode not in ORACLE_MODES:
            raise ValueError(f"oracle mode must be one of {ORACLE_MODES}, got {mode!r}")
        if len(labels) != len(superpixels):
            raise ValueError("labels and superpixels must have the same length")
        if mode == "dominant" and not n_classes:
            raise ValueError("the dominant oracle needs n_classes")
        self.labels = labels
        self.superpixels = superpixels
        self.mode = mode
        self.n_classes = n_classes
        self._dominant: dict[int, np.ndarray] = {}

    def whole_image(self, index: int) -> np.ndarray:
        """The full label map of image ``index`` (a whole-image query)."""
        return self.labels[index].astype(np.uint8, copy=True)

    def dominant_classes(self, index: int) -> np.ndarray:
        """Most frequent labeled class per superpixel; ``IGNORE_INDEX`` where none is labeled."""
        if index not in self._dominant:
            sp = self.superpixels[index].ravel()
            gt = self.labels[index].ravel().astype(np.int64)
            n = int(sp.max()) + 1
            valid = gt != IGNORE_INDEX
            counts = np.bincount(sp[valid] * self.n_classes + gt[valid],
                                 minlength=n * self.n_classes).reshape(n, self.n_classes)
            dom = counts.argmax(axis=1).astype(np.uint8)
            dom[counts.sum(axis=1) == 0] = IGNORE_INDEX
            self._dominant[index] = dom
        return self._dominant[index]

    def regions(self, index: int, superpixel_ids: Sequence[int]) -> np.ndarray:
        """A label map with the answers inside the queried superpixels, ignore elsewhere."""
        sp = self.superpixels[index]
        queried = np.zeros(int(sp.max()) + 1, dtype=bool)
        queried[np.asarray(superpixel_ids, dtype=np.int64)] = True
        inside = queried[sp]
        out = np.full(sp.shape, IGNORE_INDEX, dtype=np.uint8)
        if self.mode == "full":
            out[inside] = self.labels[index][inside]
        else:
            out[inside] = self.dominant_classes(index)[sp[inside]]
        return out


# --------------------------------------------------------------------------------------------
# Configuration and records
# --------------------------------------------------------------------------------------------
@dataclass
class SimulationConfig:
    """Settings of one simulation (every field is recorded in the results)."""

    n_classes: int
    init_images: int = 10
    step_size: int = 10
    steps: int = 5
    arch: str = "efficientnet_lite0"
    pretrained: bool = True
    uncertainty: str = "entropy"
    mc_samples: int = 20
    split: str = "natural_breaks"
    static_fraction: float | None = None  # None: match dbsal's mean selected fraction
    oracle: str = "full"
    n_segments: int = 300
    slic_algorithm: str = "SLICO"
    compactness: float = 10.0
    epochs_initial: int = 20
    epochs_step: int = 10
    epochs_full: int = 20
    fine_tune: bool = True
    batch_size: int = 8
    lr: float = 1e-3
    class_weighted: bool = True
    crop_size: int | None = None
    device: str = "auto"
    cache_dir: str = ".sim-cache"

    def train_config(self, epochs: int, seed: int) -> TrainConfig:
        return TrainConfig(epochs=epochs, batch_size=self.batch_size, lr=self.lr,
                           class_weighted=self.class_weighted, crop_size=self.crop_size,
                           hflip=True, seed=seed, device=self.device, progress=False)


@dataclass
class StepRecord:
    step: int
    images: int
    superpixels: int
    pixels: int
    pixels_fraction: float
    miou: float
    selected_per_image: list[int] = field(default_factory=list)
    selected_fraction: list[float] = field(default_factory=list)
    seconds: float = 0.0


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------
class Simulation:
    """Runs strategies over one pool/validation split with shared superpixels and seed sets."""

    def __init__(self, pool_images, pool_labels, val_images, val_labels, config: SimulationConfig):
        if not pool_images:
            raise ValueError("the pool (train split) is empty")
        if not val_images:
            raise ValueError("the validation split is empty")
        self.cfg = config
        self.pool_images = pool_images
        self.pool_labels = pool_labels
        self.val_ds = SegmentationDataset(val_images, val_labels)
        params = SlicParams(algorithm=config.slic_algorithm, n_segments=config.n_segments,
                            ruler=config.compactness)
        cache = SuperpixelCache(Path(config.cache_dir) / "superpixels", params)
        t0 = time.perf_counter()
        self.superpixels = [cache.get(img) for img in pool_images]
        log.info("superpixels for %d images in %.1fs (median %d per image)", len(pool_images),
                 time.perf_counter() - t0,
                 int(np.median([sp.max() + 1 for sp in self.superpixels])))
        self.oracle = Oracle(pool_labels, self.superpixels, config.oracle, config.n_classes)
        self.total_pixels = int(sum(lbl.size for lbl in pool_labels))
        self._initial: dict[int, tuple[dict, float]] = {}
        self.device = torch.device("cuda" if config.device == "auto" and torch.cuda.is_available()
                                   else ("cpu" if config.device == "auto" else config.device))

    # -- pieces -------------------------------------------------------------------------------
    def seed_set(self, seed: int) -> list[int]:
        rng = np.random.default_rng(seed)
        return random_images(list(range(len(self.pool_images))), self.cfg.init_images, rng)

    def _fit(self, model, labeled: dict[int, np.ndarray], epochs: int, seed: int):
        idx = sorted(labeled)
        ds = SegmentationDataset([self.pool_images[i] for i in idx], [labeled[i] for i in idx],
                                 crop_size=self.cfg.crop_size, hflip=True, seed=seed)
        train(model, ds, None, self.cfg.train_config(epochs, seed))
        return model

    def _new_model(self, seed: int):
        torch.manual_seed(seed)
        return build_model(self.cfg.arch, self.cfg.n_classes, pretrained=self.cfg.pretrained)

    def _initial_model(self, seed: int, labeled: dict[int, np.ndarray]):
        """The model trained on the seed set, and its mIoU; trained once per seed and shared
        by the strategies (they all start from the same seed set)."""
        if seed not in self._initial:
            model = self._fit(self._new_model(seed), labeled, self.cfg.epochs_initial, seed)
            state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            self._initial[seed] = (state, self._evaluate(model))
        state, miou0 = self._initial[seed]
        model = self._new_model(seed)
        model.load_state_dict(state)
        return model, miou0

    def _score(self, model, indices: Sequence[int]) -> dict[int, tuple[float, np.ndarray]]:
        """MC-dropout pixel uncertainty and image score of each pool image in ``indices``."""
        model.to(self.device)
        out = {}
        for i in indices:
            x = torch.as_tensor(np.ascontiguousarray(self.pool_images[i])).permute(2, 0, 1)
            x = x[None].float().div(255)
            stats = mc_dropout(model, x.to(self.device), n_samples=self.cfg.mc_samples, mode="head")
            u = pixel_uncertainty(stats, self.cfg.uncertainty)
            out[i] = (float(image_scores(u)[0]), u[0].float().cpu().numpy())
        return out

    def _evaluate(self, model) -> float:
        return float(evaluate(model, self.val_ds, self.cfg.n_classes, device=self.device)["miou"])

    def _record(self, step, n_images, n_sp, n_px, miou, t0, selected=(), fractions=()):
        return StepRecord(step=step, images=n_images, superpixels=n_sp, pixels=n_px,
                          pixels_fraction=n_px / self.total_pixels, miou=miou,
                          selected_per_image=list(selected), selected_fraction=list(fractions),
                          seconds=round(time.perf_counter() - t0, 1))

    # -- strategies ---------------------------------------------------------------------------
    def run(self, strategy: str, seed: int, static_fraction: float | None = None) -> list[StepRecord]:
        """Run one strategy with one seed; returns one record per step (one for ``full``)."""
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        cfg = self.cfg
        t0 = time.perf_counter()
        if strategy == "full":
            labeled = {i: self.oracle.whole_image(i) for i in range(len(self.pool_images))}
            model = self._fit(self._new_model(seed), labeled, cfg.epochs_full, seed)
            n_sp = int(sum(sp.max() + 1 for sp in self.superpixels))
            return [self._record(0, len(labeled), n_sp, self.total_pixels,
                                 self._evaluate(model), t0)]

        labeled: dict[int, np.ndarray] = {}
        n_sp = n_px = 0
        for i in self.seed_set(seed):
            labeled[i] = self.oracle.whole_image(i)
            n_sp += int(self.superpixels[i].max()) + 1
            n_px += labeled[i].size
        model, miou0 = self._initial_model(seed, labeled)
        records = [self._record(0, len(labeled), n_sp, n_px, miou0, t0)]
        log.info("%s seed %d step 0: %s", strategy, seed, records[-1])

        rng = np.random.default_rng(seed + 1000)
        for step in range(1, cfg.steps + 1):
            t0 = time.perf_counter()
            unlabeled = [i for i in range(len(self.pool_images)) if i not in labeled]
            if not unlabeled:
                break
            k = min(cfg.step_size, len(unlabeled))
            selected, fractions = [], []
            if strategy == "random":
                for i in random_images(unlabeled, k, rng):
                    labeled[i] = self.oracle.whole_image(i)
                    n_sp += int(self.superpixels[i].max()) + 1
                    n_px += labeled[i].size
                    selected.append(int(self.superpixels[i].max()) + 1)
                    fractions.append(1.0)
            else:
                scored = self._score(model, unlabeled)
                top = rank_images({i: s for i, (s, _) in scored.items()}, k)
                for i in top:
                    sp = self.superpixels[i]
                    scores = superpixel_scores(scored[i][1], sp)
                    if strategy == "dbsal":
                        high = split_superpixels(scores, method=cfg.split, seed=seed)
                    else:
                        high = split_superpixels(scores, method="static",
                                                 fraction=static_fraction)
                    ids = np.flatnonzero(high)
                    labeled[i] = self.oracle.regions(i, ids)
                    n_sp += len(ids)
                    n_px += int(np.isin(sp, ids).sum())
                    selected.append(len(ids))
                    fractions.append(len(ids) / len(scores))
            if cfg.fine_tune:
                model = self._fit(model, labeled, cfg.epochs_step, seed + step)
            else:
                model = self._fit(self._new_model(seed), labeled, cfg.epochs_initial, seed + step)
            records.append(self._record(step, len(labeled), n_sp, n_px, self._evaluate(model),
                                        t0, selected, fractions))
            log.info("%s seed %d step %d: %s", strategy, seed, step, records[-1])
        return records


def mean_selected_fraction(records: Sequence[StepRecord]) -> float:
    """Mean fraction of an image's superpixels that dbsal queried (for a matched static run).

    The authors chose their static fraction (27.5%) the same way: to match the dynamic
    method's average, so both spend about the same budget per image.
    """
    fractions = [f for r in records for f in r.selected_fraction]
    if not fractions:
        raise ValueError("no superpixel queries recorded")
    return float(np.mean(fractions))


# --------------------------------------------------------------------------------------------
# Results: JSON, plot, summary
# --------------------------------------------------------------------------------------------
def aggregate(runs: dict[str, dict[int, list[StepRecord]]]) -> dict[str, list[dict]]:
    """Mean over seeds, step by step: the ``strategies`` block of the results JSON."""
    out = {}
    for name, by_seed in runs.items():
        n_steps = min(len(r) for r in by_seed.values())
        rows = []
        for s in range(n_steps):
            recs = [r[s] for r in by_seed.values()]
            rows.append({
                "step": s,
                "images": float(np.mean([r.images for r in recs])),
                "superpixels": float(np.mean([r.superpixels for r in recs])),
                "pixels_fraction": float(np.mean([r.pixels_fraction for r in recs])),
                "miou": float(np.mean([r.miou for r in recs])),
                "miou_std": float(np.std([r.miou for r in recs])),
                "seeds": len(recs),
            })
        out[name] = rows
    return out


def miou_at(rows: list[dict], fraction: float) -> float | None:
    """mIoU interpolated linearly at a pixel fraction (None outside the strategy's range)."""
    xs = [r["pixels_fraction"] for r in rows]
    ys = [r["miou"] for r in rows]
    if len(xs) < 2 or fraction < xs[0] or fraction > xs[-1]:
        return None
    return float(np.interp(fraction, xs, ys))


def plot(strategies: dict[str, list[dict]], path: str | Path, title: str = "") -> None:
    """mIoU against the fraction of pool pixels labeled, one line per strategy."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = {"dbsal": "tab:red", "static": "tab:blue", "random": "tab:green", "full": "black"}
    for name, rows in strategies.items():
        x = np.array([r["pixels_fraction"] for r in rows]) * 100
        y = np.array([r["miou"] for r in rows]) * 100
        sd = np.array([r.get("miou_std", 0.0) for r in rows]) * 100
        if name == "full":
            ax.axhline(y[0], color=colors[name], ls="--", lw=1,
                       label=f"full supervision, 100% ({y[0]:.1f})")
            continue
        ax.plot(x, y, marker="o", color=colors.get(name), label=name)
        ax.fill_between(x, y - sd, y + sd, color=colors.get(name), alpha=0.15)
    ax.set_xlabel("pixels labeled (% of pool)")
    ax.set_ylabel("validation mIoU (%)")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dbsal_backend.simulate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="data set root with train/ and val/ (required)")
    p.add_argument("--n-classes", type=int, help="number of classes (required)")
    p.add_argument("--replot", metavar="JSON", help="only redraw the plot of a results file")
    p.add_argument("--ignore-value", type=int, default=None,
                   help="label value to ignore (e.g. 11 for CamVid void)")
    p.add_argument("--scale", type=float, default=1.0, help="resize images by this factor")
    p.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--out", default="simulation.json", help="results JSON")
    p.add_argument("--plot", default=None, help="PNG plot (default: next to --out)")
    p.add_argument("--limit-pool", type=int, default=None, help="use only the first N pool images")
    p.add_argument("--limit-val", type=int, default=None, help="use only the first N val images")
    d = SimulationConfig(n_classes=1)
    for name, value in asdict(d).items():
        if name == "n_classes":
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            p.add_argument(flag, type=lambda s: s.lower() in ("1", "true", "yes"), default=value,
                           metavar="BOOL")
        elif name == "static_fraction":
            p.add_argument(flag, type=float, default=None)
        elif name == "crop_size":
            p.add_argument(flag, type=int, default=None)
        else:
            p.add_argument(flag, type=type(value), default=value)
    return p


def main(argv: Sequence[str] | None = None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.replot:
        result = json.loads(Path(args.replot).read_text())
        plot(result["strategies"], args.plot or Path(args.replot).with_suffix(".png"),
             title=f"{Path(result['settings']['data']).name}: mIoU vs labeling budget")
        print(summary(result))
        return result
    if args.data is None or args.n_classes is None:
        parser.error("--data and --n-classes are required")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    fields = {k: getattr(args, k) for k in asdict(SimulationConfig(n_classes=1))}
    cfg = SimulationConfig(**fields)

    tr_img, tr_lbl, _ = load_split(args.data, "train", ignore_value=args.ignore_value, scale=args.scale)
    va_img, va_lbl, _ = load_split(args.data, "val", ignore_value=args.ignore_value, scale=args.scale)
    tr_img, tr_lbl = tr_img[: args.limit_pool], tr_lbl[: args.limit_pool]
    va_img, va_lbl = va_img[: args.limit_val], va_lbl[: args.limit_val]
    sim = Simulation(tr_img, tr_lbl, va_img, va_lbl, cfg)

    started = time.perf_counter()
    runs: dict[str, dict[int, list[StepRecord]]] = {}
    order = [s for s in STRATEGIES if s in args.strategies]
    static_fraction = cfg.static_fraction
    for name in order:
        for seed in args.seeds:
            if name == "static" and static_fraction is None:
                if "dbsal" not in runs:
                    raise SystemExit("--static-fraction is needed when dbsal is not run first")
                static_fraction = mean_selected_fraction(
                    [r for recs in runs["dbsal"].values() for r in recs])
                log.info("static fraction matched to dbsal: %.3f", static_fraction)
            runs.setdefault(name, {})[seed] = sim.run(name, seed, static_fraction)

    strategies = aggregate(runs)
    selected = [n for recs in runs.get("dbsal", {}).values() for r in recs for n in r.selected_per_image]
    result = {
        "strategies": strategies,
        "settings": {**asdict(cfg), "data": str(args.data), "scale": args.scale,
                     "seeds": args.seeds, "pool_images": len(tr_img), "val_images": len(va_img),
                     "image_size": list(tr_img[0].shape[:2]),
                     "static_fraction_used": static_fraction,
                     "device": str(sim.device), "torch_threads": torch.get_num_threads()},
        "superpixels_per_image": {
            "median": float(np.median([sp.max() + 1 for sp in sim.superpixels])),
        },
        "dbsal_selected_per_image": ({
            "median": float(np.median(selected)), "p90": float(np.percentile(selected, 90)),
            "mean": float(np.mean(selected)), "max": int(np.max(selected)),
        } if selected else None),
        "runs": {n: {str(s): [asdict(r) for r in recs] for s, recs in by.items()}
                 for n, by in runs.items()},
        "seconds": round(time.perf_counter() - started, 1),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    plot_path = args.plot or out.with_suffix(".png")
    plot(strategies, plot_path, title=f"{Path(args.data).name}: mIoU vs labeling budget")
    print(summary(result))
    return result


def summary(result: dict) -> str:
    """A short text table: mIoU per strategy at dbsal's budgets, with ratios."""
    st = result["strategies"]
    lines = []
    if "dbsal" in st:
        lines.append("pixels%   " + "  ".join(f"{n:>8}" for n in st if n != "full"))
        for r in st["dbsal"][1:]:
            f = r["pixels_fraction"]
            vals = {n: miou_at(rows, f) for n, rows in st.items() if n != "full"}
            lines.append(f"{100 * f:7.2f}   " + "  ".join(
                f"{100 * v:8.2f}" if v is not None else f"{'-':>8}" for v in vals.values()))
    if "full" in st:
        lines.append(f"full supervision: {100 * st['full'][0]['miou']:.2f}")
    if result.get("dbsal_selected_per_image"):
        s = result["dbsal_selected_per_image"]
        lines.append(f"dbsal superpixels selected per image: median {s['median']:.0f}, "
                     f"p90 {s['p90']:.0f} (of {result['superpixels_per_image']['median']:.0f})")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
