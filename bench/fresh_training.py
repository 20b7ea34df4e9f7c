"""Is the gap to full supervision the labels' or the training's? Warm against fresh models.

    OMP_NUM_THREADS=1 .venv/bin/python bench/fresh_training.py --seeds 0 [--at 4] \\
        [--steps 4 --images-per-step 10 --epochs 20] [--fresh-epochs 60]

Runs the product's default strategy on CamVid exactly as ``bench/camvid_al.sh`` does (the same
seed sets and seed models, kept in ``.sim-cache``). After the steps named by ``--at``, the
labels gathered so far (the seed set's whole images, the reviewed regions of the queried ones)
train two more models, and all three are scored on val:

``warm``       the run's own model: the seed model fine-tuned ``--epochs`` at every step (what
               the backend serves)
``fresh``      a new model from the ImageNet weights, trained ``--fresh-epochs`` on the same
               labels (training from scratch at every retrain)
``warm_more``  the run's model trained ``--fresh-epochs`` more on the same labels (the same
               extra training as ``fresh``, to tell a fresh start from more training)
``anchor``     the seed model (trained on the seed set alone) fine-tuned ``--anchor-epochs``
               (default ``--epochs``) on the same labels: one step's training from the first
               model instead of the last (no chain of fine-tunings; by default the same cost as
               the run's own step)
``step``       the run's model fine-tuned once more as the strategy's steps do (its trimming,
               ``--epochs``) on the same labels
``step_ema``   the same, ending with the moving average of its weights (``--ema``,
               :attr:`~dbsal_backend.engine.training.Recipe.ema`): the same shuffling,
               augmentation and trimming as ``step``, so the pair differs by the averaging alone

``passes`` counts image passes of training behind each model. The run itself is not changed:
the extra models are trained on copies, with the random state put back, so ``warm`` is the
curve of ``camvid_al.json``. Writes ``bench/results/fresh_training.json`` (``--out``) after
every seed, with a ``summary`` over the seeds done so far (seeds run by separate processes
into separate files are merged by ``--merge``).

With ``--from-cache`` nothing is run again: the extra models are trained on the labels of the
last step that the strategy's run (``bench/camvid_al.sh``, ``bench/peanut_al.sh``) kept in
``.sim-cache`` for ``--steps``; ``--n-classes 3 --ignore-value -1`` for Peanut (no void):

    OMP_NUM_THREADS=1 .venv/bin/python bench/fresh_training.py --data ../shared/data/peanut \
        --n-classes 3 --ignore-value -1 --strategy seed5 --steps 16 --from-cache --seeds 0 \
        --arms fresh --out bench/results/fresh_training_peanut.json

The weight averaging of ``bench/results/weight_averaging_camvid.json`` (one process a seed,
about 55 minutes each with three on the 2 cores, then ``--merge``):

    OMP_NUM_THREADS=1 .venv/bin/python bench/fresh_training.py --strategy trimmed_answers \
        --steps 19 --images-per-step 20 --from-cache --seeds 0 --arms step step_ema \
        --ema 0.998 --out bench/results/weight_averaging_camvid_s0.json
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

from dbsal_backend.simulator import STRATEGIES  # noqa: E402
from prelabels import al_simulation, merge_seed_files  # noqa: E402

ARMS = ("warm", "fresh", "warm_more", "anchor", "step", "step_ema")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="../shared/data/camvid")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--images-per-step", type=int, default=10)
    p.add_argument("--epochs", type=int, default=20, help="fine-tuning epochs per step")
    p.add_argument("--at", nargs="+", type=int, default=None,
                   help="steps after which the extra models are trained (default: the last)")
    p.add_argument("--fresh-epochs", type=int, default=60)
    p.add_argument("--anchor-epochs", type=int, default=None,
                   help="epochs of the anchor arm (default: --epochs)")
    p.add_argument("--ema", type=float, default=0.998, help="the decay of step_ema's average")
    p.add_argument("--strategy", default="default", choices=list(STRATEGIES))
    p.add_argument("--out", default="bench/results/fresh_training.json")
    p.add_argument("--merge", nargs="+", metavar="JSON",
                   help="only merge these results files (same settings) into --out")
    p.add_argument("--from-cache", action="store_true",
                   help="take the run's last cached step (of --steps) instead of running it")
    p.add_argument("--arms", nargs="+", choices=ARMS[1:], default=["fresh", "warm_more"],
                   help="the extra models to train (default: fresh and warm_more)")
    p.add_argument("--n-classes", type=int, default=11)
    p.add_argument("--ignore-value", type=int, default=11, help="the void value; -1: none")
    args = p.parse_args()
    if args.merge:
        merge_seed_files(args.merge, args.out, summary)
        return
    at = {args.steps} if args.from_cache else set(args.at or [args.steps])
    sim = al_simulation(args.data, steps=args.steps, images_per_step=args.images_per_step,
                       epochs=args.epochs, n_classes=args.n_classes,
                       ignore_value=None if args.ignore_value < 0 else args.ignore_value)
    strategy = STRATEGIES[args.strategy]
    out_path = Path(args.out)
    out = json.loads(out_path.read_text()) if out_path.exists() else {"seeds": {}}
    out["settings"] = {"data": args.data, "strategy": args.strategy, "steps": args.steps,
                       "images_per_step": args.images_per_step, "epochs": args.epochs,
                       "first_epochs": sim.cfg.first_epochs, "fresh_epochs": args.fresh_epochs,
                       **({"anchor_epochs": args.anchor_epochs} if args.anchor_epochs else {}),
                       **({"ema": args.ema} if "step_ema" in args.arms else {}),
                       "max_side": sim.cfg.max_side, "at": sorted(at), "arms": args.arms,
                       "n_classes": args.n_classes, "from_cache": args.from_cache,
                       "torch_threads": torch.get_num_threads()}

    for seed in args.seeds:
        rows: dict[int, dict] = {}
        init = strategy.init_images or sim.cfg.init_images

        def look(step: int, model: torch.nn.Module, labeled: dict) -> None:
            if step not in at:
                return
            n = len(labeled)
            row = {"images": n, "warm": sim.evaluate(model),
                   "passes": {"warm": sim.cfg.first_epochs * init + args.epochs * sum(
                       init + s * args.images_per_step for s in range(1, step + 1)),
                       "fresh": args.fresh_epochs * n}}
            row["passes"]["warm_more"] = row["passes"]["warm"] + args.fresh_epochs * n
            anchor_epochs = args.anchor_epochs or args.epochs
            row["passes"]["anchor"] = sim.cfg.first_epochs * init + anchor_epochs * n
            row["passes"]["step"] = row["passes"]["step_ema"] = (row["passes"]["warm"]
                                                                 + args.epochs * n)
            t0 = time.perf_counter()
            with torch.random.fork_rng():
                if "fresh" in args.arms:
                    fresh = sim.train(sim.new_model(seed), labeled, seed, args.fresh_epochs)
                    row["fresh"] = sim.evaluate(fresh)
                if "warm_more" in args.arms:
                    more = sim.train(copy.deepcopy(model), labeled, seed + 100 + step,
                                     args.fresh_epochs)
                    row["warm_more"] = sim.evaluate(more)
                if "anchor" in args.arms:
                    first = sim.seed_start(seed, strategy.init_images)[0]
                    row["anchor"] = sim.evaluate(sim.train(first, labeled, seed + step,
                                                           anchor_epochs))
                for arm, averaged in (("step", None), ("step_ema", args.ema)):
                    if arm in args.arms:
                        again = sim.train(copy.deepcopy(model), labeled, seed + 100 + step,
                                          None, replace(strategy, ema=averaged))
                        row[arm] = sim.evaluate(again)
            model.eval()
            row["seconds"] = round(time.perf_counter() - t0, 1)
            rows[step] = row
            print(f"seed {seed} step {step}: {n} images, " + ", ".join(
                f"{arm} {row[arm]:.4f}" for arm in ARMS if arm in row), flush=True)

        if args.from_cache:
            saved = sim.saved_run(strategy, seed)
            if saved is None or len(saved[2]) - 1 != args.steps:
                raise SystemExit(f"no cached run of {args.strategy} seed {seed} to step "
                                 f"{args.steps}: run it first (bench/*_al.sh)")
            model, labeled, records = saved
            look(args.steps, model, labeled)
        else:  # every step runs again (no resuming from the cache), so that look sees each one
            records = sim.run(strategy, seed, on_step=look, resume=False)
        for step, row in rows.items():
            row["clicks"] = records[step].clicks
            assert abs(row["warm"] - records[step].miou) < 1e-9  # the run's own model
        out["seeds"][str(seed)] = {"seed_miou": records[0].miou,
                                   "steps": {str(s): r for s, r in sorted(rows.items())}}
        out["summary"] = summary(out["seeds"])
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(out, indent=1))


def summary(seeds: dict) -> dict:
    """Per step: each model's mean mIoU over the seeds, and the paired differences from
    ``warm`` (and of ``step_ema`` from ``step``)."""
    out = {}
    for step in sorted({s for row in seeds.values() for s in row["steps"]}, key=int):
        rows = [row["steps"][step] for row in seeds.values() if step in row["steps"]]
        entry = {"seeds": len(rows)}
        arms = [arm for arm in ARMS if all(arm in r for r in rows)]
        for arm in arms:
            values = np.array([r[arm] for r in rows])
            entry[arm] = {"miou": float(values.mean()), "std": float(values.std())}
        for arm in arms[1:]:
            diffs = np.array([r[arm] - r["warm"] for r in rows])
            entry[f"{arm}_minus_warm"] = {"mean": float(diffs.mean()), "std": float(diffs.std()),
                                          "per_seed": diffs.round(4).tolist()}
        if "step" in arms and "step_ema" in arms:  # the averaging alone
            diffs = np.array([r["step_ema"] - r["step"] for r in rows])
            entry["step_ema_minus_step"] = {"mean": float(diffs.mean()),
                                            "std": float(diffs.std()),
                                            "per_seed": diffs.round(4).tolist()}
        out[step] = entry
    return out


if __name__ == "__main__":
    main()
