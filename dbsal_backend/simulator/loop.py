"""The loop: every strategy's steps on one pool, each step the product's own code; seed
models and each run's last step are kept in the cache directory, so runs resume."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..engine.active import QueryPolicy, StepResult, active_step
from ..engine.constants import IGNORE_INDEX
from ..engine.data import fit_side, resize_nearest
from ..engine.devices import pick_device
from ..engine.label_maps import inverse_sqrt_weights, pixel_counts
from ..engine.metrics import evaluate
from ..engine.networks import build_model
from ..engine.scoring import Scorer
from ..engine.selection import random_images
from ..engine.start import start_regions
from ..engine.superpixels import SlicParams, SuperpixelCache
from ..engine.training import Recipe, class_weights, fit, renews_anchor
from .annotator import Answer, SimulatedAnnotator, cai_clicks
from .progress import Progress, cpu_state, save
from .records import SimConfig, SimulatedStep, Tally, jsonable
from .strategies import Strategy

log = logging.getLogger(__name__)


class Simulation:
    """Runs strategies on one pool and validation split; seed sets and seed models are shared
    by the strategies of one seed."""

    def __init__(self, pool_images: Sequence[np.ndarray], pool_labels: Sequence[np.ndarray],
                 val_images: Sequence[np.ndarray], val_labels: Sequence[np.ndarray],
                 config: SimConfig) -> None:
        if not pool_images or not val_images:
            raise ValueError("the pool (train split) and the validation split must not be empty")
        self.cfg = config
        self.pool_images = list(pool_images)
        self.pool_labels = list(pool_labels)
        self.val_images = list(val_images)
        self.val_labels = list(val_labels)
        self.device = pick_device(config.device)
        self.annotator = SimulatedAnnotator(config.n_classes, config.clicks)
        self.total_pixels = int(sum((lbl != IGNORE_INDEX).sum() for lbl in self.pool_labels))
        self._whole = [None] * len(self.pool_images)
        self._caches: dict[SlicParams, SuperpixelCache] = {}
        self._seed_models: dict[str, tuple[dict, float]] = {}  # by _seed_key
        self._mean_fraction: dict[tuple[str, int], float] = {}

    # -- pieces -------------------------------------------------------------------------------
    def seed_set(self, seed: int, images: int | None = None) -> list[int]:
        """The seed set of ``seed``: ``init_images`` random pool images, or the first ``images``
        of the same draw when that is fewer (a strategy's seed set is part of the run's)."""
        if images is not None and images < 1:
            raise ValueError(f"a seed set needs at least one image, got {images}")
        rng = np.random.default_rng(seed)
        drawn = random_images(list(range(len(self.pool_images))), self.cfg.init_images, rng)
        return sorted(drawn[:images])

    def whole(self, index: int) -> Answer:
        """The annotator's answer for a whole pool image (cached: it never changes)."""
        if self._whole[index] is None:
            self._whole[index] = self.annotator.whole_image(self.pool_labels[index])
        return self._whole[index]

    def superpixels(self, params: SlicParams) -> SuperpixelCache:
        if params not in self._caches:
            self._caches[params] = SuperpixelCache(Path(self.cfg.cache_dir) / "superpixels",
                                                   params)
        return self._caches[params]

    def new_model(self, seed: int) -> torch.nn.Module:
        torch.manual_seed(seed)
        return build_model(self.cfg.arch, self.cfg.n_classes, pretrained=self.cfg.pretrained)

    def train(self, model, labeled: dict[int, np.ndarray], seed: int, epochs: int | None = None,
              strategy: Strategy | None = None):
        """Train on ``labeled`` (fine-tuning ``model``) for ``epochs`` (default: the recipe's),
        with the self-labels and trimming of ``strategy`` (none without one; the labels equal to
        the annotator's whole-image answer are exact, kept whole unless it trims those too)."""
        idx = sorted(labeled)
        images = [fit_side(self.pool_images[i], self.cfg.max_side) for i in idx]
        labels = [resize_nearest(labeled[i], *im.shape[:2]) for i, im in zip(idx, images)]
        recipe = replace(self.cfg.recipe, seed=seed, epochs=epochs or self.cfg.recipe.epochs,
                         self_label=strategy.self_label if strategy else None,
                         self_label_share=strategy.self_label_share if strategy else None,
                         trim=strategy.trim if strategy else None,
                         ema=strategy.ema if strategy else None)
        exact = None
        if recipe.trim is not None and not strategy.trim_whole:
            exact = [np.array_equal(labeled[i], self.whole(i).labels) for i in idx]
        fit(model, images, labels, recipe, self.device, exact)
        return model

    def evaluate(self, model) -> float:
        return float(evaluate(model, self.val_images, self.val_labels, self.cfg.n_classes,
                              self.cfg.max_side)["miou"])

    def _seed_model(self, seed: int, labeled: dict[int, np.ndarray], epochs: int | None = None):
        """The model trained ``epochs`` (default: ``first_epochs``) on the seed set and its
        mIoU, trained once per seed (and kept in ``cache_dir/seed_models``, keyed by everything
        it depends on, for later runs)."""
        epochs = epochs or self.cfg.first_epochs
        key = self._seed_key(seed, labeled, epochs)
        if key not in self._seed_models:
            path = Path(self.cfg.cache_dir) / "seed_models" / f"{key}.pt"
            saved = None
            if path.exists():
                try:
                    saved = torch.load(path, map_location="cpu", weights_only=True)
                    self._seed_models[key] = (saved["state"], float(saved["miou"]))
                    log.info("seed %d: seed model from %s", seed, path)
                except Exception as exc:  # a damaged file is trained again and replaced
                    log.warning("seed %d: cannot read %s (%s); training again", seed, path, exc)
                    saved = None
            if saved is None:
                model = self.train(self.new_model(seed), labeled, seed, epochs)
                state = cpu_state(model)
                self._seed_models[key] = (state, self.evaluate(model))
                save(path, {"state": state, "miou": self._seed_models[key][1]})
        state, miou0 = self._seed_models[key]
        model = self.new_model(seed)
        model.load_state_dict(state)
        return model.to(self.device).eval(), miou0

    def _seed_key(self, seed: int, labeled: dict[int, np.ndarray],
                  epochs: int | None = None) -> str:
        """A digest of what the seed model depends on: the model and training settings (its
        ``epochs``, default ``first_epochs``), the device type, torch's version, the seed set's
        labels and the validation split (its mIoU)."""
        cfg = self.cfg
        epochs = epochs or cfg.first_epochs
        digest = hashlib.sha256(json.dumps({
            "arch": cfg.arch, "n_classes": cfg.n_classes, "pretrained": cfg.pretrained,
            "max_side": cfg.max_side, "epochs": epochs, "seed": seed,
            "recipe": _recipe_key(replace(cfg.recipe, seed=seed, epochs=epochs,
                                          self_label=None, self_label_share=None)),
            "device": self.device.type, "torch": torch.__version__, "images": sorted(labeled),
        }, sort_keys=True).encode())
        for i in sorted(labeled):
            digest.update(np.ascontiguousarray(self.pool_images[i]).tobytes())
            digest.update(np.ascontiguousarray(labeled[i]).tobytes())
        for image, label in zip(self.val_images, self.val_labels):
            digest.update(np.ascontiguousarray(image).tobytes())
            digest.update(np.ascontiguousarray(label).tobytes())
        return digest.hexdigest()[:24]

    def _record(self, step: int, tally: Tally, miou: float, t0: float, **extra) -> SimulatedStep:
        return SimulatedStep(step=step, images=tally.images, regions=tally.regions,
                          corrections=tally.corrections, clicks=tally.clicks, pixels=tally.pixels,
                          pixels_fraction=tally.pixels / self.total_pixels, miou=miou,
                          seconds=round(time.perf_counter() - t0, 1),
                          cai_clicks=cai_clicks(tally.clicks, tally.regions, tally.corrections,
                                                self.cfg.clicks), **extra)

    # -- strategies ---------------------------------------------------------------------------
    def run(self, strategy: Strategy, seed: int,
            on_step: Callable[[int, torch.nn.Module, dict[int, np.ndarray]], None] | None = None,
            resume: bool = True) -> list[SimulatedStep]:
        """Run one strategy with one seed: one record per step (one for ``full``).

        ``on_step(step, model, labeled)``, if given, is called after each post-seed step's
        training with the step's model and every label so far (to look, not to change them).
        With ``resume`` the run goes on from the last step kept in the cache for the same
        settings, and ``on_step`` sees only the steps run now; without it every step runs."""
        cfg = self.cfg
        t0 = time.perf_counter()
        if strategy.kind == "full":
            tally = Tally()
            for i in range(len(self.pool_images)):
                tally.add(self.whole(i))
            labeled = {i: self.pool_labels[i] for i in range(len(self.pool_images))}
            model = self.train(self.new_model(seed), labeled, seed,
                              cfg.full_epochs or cfg.first_epochs)
            return [self._record(0, tally, self.evaluate(model), t0)]

        model, labeled, tally, miou0 = self.start(strategy, seed)
        anchor = None  # the model later steps fine-tune (first, doubling) and its images
        if renews_anchor(strategy.fine_tune, None, len(labeled)):
            anchor = (copy.deepcopy(model), len(labeled))
        records = [self._record(0, tally, miou0, t0)]
        log.info("%s seed %d step 0: mIoU %.4f, %d clicks", strategy.name, seed, miou0,
                 tally.clicks)
        policy = self._policy(strategy, seed)
        rng = np.random.default_rng(seed + 1000)
        progress = Progress(self._progress_path(strategy, policy, seed, labeled))
        saved = progress.load(cfg.steps)
        if saved is not None and resume:
            labeled, records = _restore(saved, model)
            if anchor is not None and "anchor" in saved:  # else still the seed model
                anchor[0].load_state_dict(saved["anchor"]["model"])
                anchor = (anchor[0], int(saved["anchor"]["images"]))
            tally = Tally(**saved["tally"])
            rng.bit_generator.state = saved["rng"]
            torch.set_rng_state(saved["torch_rng"])
            log.info("%s seed %d: resumed after step %d from %s", strategy.name, seed,
                     len(records) - 1, progress.path)
        for step in range(len(records), cfg.steps + 1):
            t0 = time.perf_counter()
            unlabeled = [i for i in range(len(self.pool_images)) if i not in labeled]
            if not unlabeled:
                break
            extra: dict = {}
            if strategy.kind == "none":
                pass
            elif strategy.kind == "random":
                for i in random_images(unlabeled, min(cfg.images_per_step, len(unlabeled)), rng):
                    answer = self.whole(i)
                    labeled[i] = answer.labels
                    tally.add(answer)
            else:
                extra = self._query(model, strategy, policy, labeled, tally, seed)
            start, epochs = self._start(model, anchor, strategy, seed)
            model = self.train(start, labeled, seed + step, epochs, strategy)
            if anchor is not None and renews_anchor(strategy.fine_tune, anchor[1], len(labeled)):
                anchor = (copy.deepcopy(model), len(labeled))
            records.append(self._record(step, tally, self.evaluate(model), t0, **extra))
            progress.save(step, model, labeled, tally, records, rng, anchor)
            if on_step is not None:
                on_step(step, model, labeled)
            r = records[-1]
            log.info("%s seed %d step %d: mIoU %.4f, %d clicks, pre-labels %s, %.0fs",
                     strategy.name, seed, step, r.miou, r.clicks, r.prelabel_accuracy, r.seconds)
        if strategy.kind == "regions":
            fractions = [f for r in records for f in r.superpixel_fraction]
            self._mean_fraction[(strategy.name, seed)] = float(np.mean(fractions))
        return records

    def _start(self, model, anchor, strategy: Strategy, seed: int):
        """The model a step fine-tunes (``strategy.fine_tune``: the last step's, a copy of the
        ``anchor``'s model, or new weights) and its epochs (None: the recipe's)."""
        if strategy.fine_tune == "last":
            return model, None
        if anchor is not None:
            return copy.deepcopy(anchor[0]), None
        return self.new_model(seed), self.cfg.first_epochs

    def saved_run(self, strategy: Strategy, seed: int
                  ) -> tuple[torch.nn.Module, dict[int, np.ndarray], list[SimulatedStep]] | None:
        """The last step that :meth:`run` kept in the cache for these settings (at most
        ``cfg.steps``): its model, every label so far and the records up to it; None if the run
        has kept no step. Nothing is trained (but the seed model, if it is not cached)."""
        model, labeled, _, _ = self.start(strategy, seed)
        path = self._progress_path(strategy, self._policy(strategy, seed), seed, labeled)
        saved = Progress(path).load(self.cfg.steps)
        if saved is None:
            return None
        labeled, records = _restore(saved, model)
        return model, labeled, records

    def _progress_path(self, strategy: Strategy, policy: QueryPolicy | None, seed: int,
                       labeled: dict[int, np.ndarray]) -> Path:
        """Where a run keeps its last step: named by a digest of everything its steps depend
        on (the seed model's key, the strategy with its resolved policy, the settings) but the
        number of steps, so that a longer run of the same settings takes up where it ended."""
        described = asdict(replace(strategy, policy=policy))
        if strategy.fine_tune == "last":  # runs from before the field keep their files
            del described["fine_tune"]
        if strategy.trim is None:  # the same
            del described["trim"]
        if strategy.trim is None or strategy.trim_whole:  # the same
            del described["trim_whole"]
        for name in ("ema", "start_regions", "first_epochs"):  # the same
            if described[name] is None:
                del described[name]
        if strategy.start_pick == "random":  # the same
            del described["start_pick"]
        settings = asdict(replace(self.cfg, steps=0, device="", cache_dir=""))
        settings["recipe"] = _recipe_key(self.cfg.recipe)
        digest = hashlib.sha256(json.dumps({
            "seed_model": self._seed_key(seed, labeled, strategy.first_epochs),
            "strategy": jsonable(described),
            "settings": jsonable(settings),
        }, sort_keys=True).encode()).hexdigest()[:24]
        return Path(self.cfg.cache_dir) / "runs" / f"{strategy.name}_{seed}_{digest}.pt"

    def _policy(self, strategy: Strategy, seed: int) -> QueryPolicy | None:
        if strategy.policy is None:
            return None
        policy = replace(strategy.policy,
                         images=strategy.images_per_step or self.cfg.images_per_step)
        if strategy.match is not None:
            key = (strategy.match, seed)
            if key not in self._mean_fraction:
                raise ValueError(f"strategy {strategy.name!r} is matched to {strategy.match!r}: "
                                 f"run {strategy.match!r} with seed {seed} first")
            policy = replace(policy, static_fraction=self._mean_fraction[key])
        return policy

    def start(self, strategy: Strategy, seed: int
              ) -> tuple[torch.nn.Module, dict[int, np.ndarray], Tally, float]:
        """What ``strategy`` starts from with ``seed``: :meth:`seed_start` (whole images), or
        with ``start_regions`` :meth:`region_start`."""
        if strategy.start_regions is None:
            return self.seed_start(seed, strategy.init_images, strategy.first_epochs)
        labeled, tally = self.region_start(seed, strategy.init_images or self.cfg.init_images,
                                           strategy.start_regions, strategy.superpixels,
                                           strategy.answers == "repaint", strategy.start_pick)
        model, miou0 = self._seed_model(seed, labeled, strategy.first_epochs)
        return model, labeled, tally, miou0

    def region_start(self, seed: int, images: int, regions: int, superpixels: SlicParams,
                     repaint: bool = False, pick: str = "random"
                     ) -> tuple[dict[int, np.ndarray], Tally]:
        """A start with no whole images: ``regions`` superpixels of each of ``images`` random
        pool images (a draw of their own; the superpixels random, or with ``pick="colour"``
        :func:`~dbsal_backend.engine.start.colour_regions`), each a region the annotator
        answers; before any model there is no guess, so every region is relabeled (pre-label:
        no class)."""
        rng = np.random.default_rng([seed, 3])
        cache = self.superpixels(superpixels)
        labeled: dict[int, np.ndarray] = {}
        tally = Tally()
        for i in sorted(random_images(list(range(len(self.pool_images))), images, rng)):
            segments = cache.get(self.pool_images[i])
            asked = start_regions(pick, self.pool_images[i], segments, regions, rng,
                                  self.cfg.n_classes)
            answer = self.annotator.review(self.pool_labels[i], segments, asked, repaint)
            labeled[i] = answer.labels
            tally.add(answer)
        return labeled, tally

    def seed_start(self, seed: int, images: int | None = None, epochs: int | None = None
                   ) -> tuple[torch.nn.Module, dict[int, np.ndarray], Tally, float]:
        """What every strategy of ``seed`` starts from: the seed model, the seed set's labels,
        their cost and the model's mIoU (``images``: a smaller seed set, see :meth:`seed_set`;
        ``epochs``: the seed model's, default ``first_epochs``)."""
        tally = Tally()
        labeled: dict[int, np.ndarray] = {}
        for i in self.seed_set(seed, images):
            answer = self.whole(i)
            labeled[i] = answer.labels
            tally.add(answer)
        model, miou0 = self._seed_model(seed, labeled, epochs)
        return model, labeled, tally, miou0

    def scorer(self, model, labeled: dict[int, np.ndarray], seed: int) -> Scorer:
        """The step's scorer, as the backend makes it (pre-labels corrected for the loss's
        class weights)."""
        cfg = self.cfg
        prior = (class_weights(list(labeled.values()), cfg.n_classes)
                 if cfg.recipe.class_weighted else None)
        return Scorer(model, cfg.n_classes, heuristic=cfg.heuristic, mc_samples=cfg.mc_samples,
                      max_side=cfg.max_side, seed=seed, class_weights=prior)

    def step(self, scorer: Scorer, strategy: Strategy, policy: QueryPolicy,
             labeled: dict[int, np.ndarray], seed: int) -> StepResult:
        """The product's step on the pool images not in ``labeled``."""
        weights = (inverse_sqrt_weights(pixel_counts(labeled.values(), self.cfg.n_classes), "rarest")
                   if policy.class_balanced else None)
        unlabeled = [i for i in range(len(self.pool_images)) if i not in labeled]
        return active_step(((i, self.pool_images[i]) for i in unlabeled), scorer,
                           self.superpixels(strategy.superpixels).get, policy,
                           class_weights=weights, seed=seed)

    def _query(self, model, strategy: Strategy, policy: QueryPolicy,
               labeled: dict[int, np.ndarray], tally: Tally, seed: int) -> dict:
        """One product step on the unlabeled pool; the annotator answers every query."""
        result = self.step(self.scorer(model, labeled, seed), strategy, policy, labeled, seed)
        extra = {"regions_per_image": [], "superpixel_fraction": [], "prelabels_right": 0,
                 "prelabels_judged": 0}
        for query in result.queries:
            answer = self.annotator.review(self.pool_labels[query.key], query.superpixels,
                                           query.regions, repaint=strategy.answers == "repaint")
            labeled[query.key] = answer.labels
            tally.add(answer)
            extra["regions_per_image"].append(len(query.regions))
            extra["superpixel_fraction"].append(query.n_superpixels / query.table_size)
            extra["prelabels_right"] += answer.prelabels_right
            extra["prelabels_judged"] += answer.prelabels_judged
        return extra


def _recipe_key(recipe: Recipe) -> dict:
    """The recipe as the cache's digests describe it: without ``trim`` and ``ema`` when they are
    off, so that the files kept before those fields are still found."""
    described = jsonable(asdict(recipe))
    for name in ("trim", "ema"):
        if getattr(recipe, name) is None:
            del described[name]
    return described


def _restore(saved: dict, model: torch.nn.Module
             ) -> tuple[dict[int, np.ndarray], list[SimulatedStep]]:
    """Load a :class:`Progress` state's model into ``model``; its labels and records."""
    model.load_state_dict(saved["model"])
    labeled = {int(i): label.numpy() for i, label in zip(saved["keys"], saved["labels"])}
    return labeled, [SimulatedStep(**r) for r in saved["records"]]
