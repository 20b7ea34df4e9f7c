"""The command line: ``python -m dbsal_backend.simulator --data DIR --n-classes N`` (``--help``
lists the options and the strategies)."""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import torch

from .. import simulator
from ..engine.data import load_split
from ..engine.training import Recipe
from . import strategies
from .annotator import ClickModel
from .loop import Simulation
from .records import SimConfig, SimulatedStep, jsonable
from .report import combine, cost_model_text, plot, results, summary
from .strategies import STRATEGIES


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dbsal_backend.simulator",
                                description=f"{simulator.__doc__}\n{strategies.__doc__}",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="data set root with train/ and val/")
    p.add_argument("--n-classes", type=int, required=True)
    p.add_argument("--ignore-value", type=int, default=None,
                   help="label value to ignore (11 for CamVid void)")
    p.add_argument("--strategies", nargs="+", default=["dbsal", "static", "random", "full"],
                   choices=list(STRATEGIES))
    p.add_argument("--default", default=None,
                   help="the strategy compared at equal clicks with the others")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--init-images", type=int, default=SimConfig.init_images)
    p.add_argument("--images-per-step", type=int, default=SimConfig.images_per_step)
    p.add_argument("--steps", type=int, default=SimConfig.steps)
    p.add_argument("--arch", default=SimConfig.arch)
    p.add_argument("--pretrained", choices=("true", "false"),
                   default=str(SimConfig.pretrained).lower(),
                   help="ImageNet encoder weights")
    p.add_argument("--heuristic", default=SimConfig.heuristic)
    p.add_argument("--mc-samples", type=int, default=SimConfig.mc_samples)
    p.add_argument("--max-side", type=int, default=SimConfig.max_side)
    p.add_argument("--epochs", type=int, default=Recipe.epochs, help="epochs per step")
    p.add_argument("--first-epochs", type=int, default=SimConfig.first_epochs,
                   help="epochs of the seed model")
    p.add_argument("--full-epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=Recipe.batch_size)
    p.add_argument("--lr", type=float, default=Recipe.lr)
    p.add_argument("--tolerance", type=float, default=ClickModel.tolerance,
                   help="Douglas-Peucker tolerance of polygon clicks, pixels")
    p.add_argument("--min-part", type=float, default=ClickModel.min_part,
                   help="smallest part a person draws, share of the image's pixels")
    p.add_argument("--limit-pool", type=int, default=None)
    p.add_argument("--limit-val", type=int, default=None)
    p.add_argument("--device", default=SimConfig.device)
    p.add_argument("--cache-dir", default=SimConfig.cache_dir)
    p.add_argument("--out", default="simulation.json")
    p.add_argument("--plot", default=None, help="PNG (default: next to --out)")
    p.add_argument("--rename", nargs="+", default=[], metavar="OLD=NEW",
                   help="with --combine: strategies under new names (recorded in the settings)")
    p.add_argument("--replot", action="store_true", help="only redraw the plot of --out")
    p.add_argument("--combine", nargs="+", metavar="JSON",
                   help="merge the runs of earlier results files into --out (no simulation)")
    return p


def main(argv: Sequence[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    if args.replot:
        result = json.loads(out.read_text())
        plot(result["strategies"], args.plot or out.with_suffix(".png"), result.get("title", ""))
        return result
    if args.combine:
        rename = dict(r.split("=", 1) for r in args.rename)
        result = combine([json.loads(Path(f).read_text()) for f in args.combine], args.default,
                         rename)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1))
        plot(result["strategies"], args.plot or out.with_suffix(".png"), result["title"])
        print(summary(result))
        return result
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    recipe = Recipe(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr)
    cfg = SimConfig(n_classes=args.n_classes, init_images=args.init_images,
                    images_per_step=args.images_per_step, steps=args.steps, arch=args.arch,
                    pretrained=args.pretrained == "true",
                    heuristic=args.heuristic, mc_samples=args.mc_samples,
                    max_side=args.max_side, recipe=recipe, first_epochs=args.first_epochs,
                    full_epochs=args.full_epochs,
                    clicks=ClickModel(tolerance=args.tolerance, min_part=args.min_part),
                    device=args.device, cache_dir=args.cache_dir)
    pool_x, pool_y, _ = load_split(args.data, "train", ignore_value=args.ignore_value)
    val_x, val_y, _ = load_split(args.data, "val", ignore_value=args.ignore_value)
    pool_x, pool_y = pool_x[:args.limit_pool], pool_y[:args.limit_pool]
    val_x, val_y = val_x[:args.limit_val], val_y[:args.limit_val]
    sim = Simulation(pool_x, pool_y, val_x, val_y, cfg)

    started = time.perf_counter()
    names = list(dict.fromkeys(args.strategies))
    for name in list(names):  # a matched strategy runs after the one it is matched to
        match = STRATEGIES[name].match
        if match and match not in names:
            raise SystemExit(f"strategy {name!r} needs {match!r} in --strategies")
    names.sort(key=lambda n: STRATEGIES[n].match is not None)
    runs: dict[str, dict[int, list[SimulatedStep]]] = {}
    for name in names:
        for seed in args.seeds:
            runs.setdefault(name, {})[seed] = sim.run(STRATEGIES[name], seed)

    settings = {**jsonable(asdict(cfg)), "data": str(args.data), "seeds": args.seeds,
                "strategies": {n: jsonable(asdict(STRATEGIES[n])) for n in names},
                "pool_images": len(pool_x), "val_images": len(val_x),
                "image_size": list(pool_x[0].shape[:2]), "device": str(sim.device),
                "torch_threads": torch.get_num_threads()}
    result = results(runs, settings, args.default or names[0], cost_model_text(cfg.clicks),
                     f"{Path(args.data).name}: mIoU against annotator effort")
    result["seconds"] = round(time.perf_counter() - started, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    plot(result["strategies"], args.plot or out.with_suffix(".png"), result["title"])
    print(summary(result))
    return result

