"""Offline simulator: the backend's active-learning loop on a labeled data set.

A :class:`~dbsal_backend.annotator.SimulatedAnnotator` plays the people, so label efficiency can
be measured in the currency people pay, clicks:
``python -m dbsal_backend.simulate --data DIR --n-classes 11 --ignore-value 11``.

Every step runs the product's code: :func:`~dbsal_backend.active.active_step` with a
:class:`~dbsal_backend.scoring.Scorer` (images at the working resolution ``max_side``,
superpixels and regions at full size), the annotator answers each query at full size, and
:func:`~dbsal_backend.training.fit` fine-tunes the model with the training :class:`Recipe`.
The validation split is scored after every step at full size.

Data layout: ``DIR/{train,val}/images/*`` and ``DIR/{train,val}/labels/<stem>.png``
(class-index PNGs). ``train`` is the unlabeled pool.

Strategies (:data:`STRATEGIES`; for one seed all start from the same seed set of whole images and
the same model trained on it):

``dbsal``     the paper: per-image natural-breaks split, one region per superpixel (SLICO, 300).
``static``    the paper's static budget: the same top fraction of superpixels in every image,
              matched to dbsal's mean fraction of the same seed (one region per superpixel).
``merged``    dbsal with connected same-class superpixels merged into one region.
``smoothed``  ``merged`` with the pre-labels smoothed over the superpixel graph (2 rounds).
``coarse``    ``smoothed`` on 150 boundary-following SLIC superpixels (compactness 5).
``step``      ``coarse`` with one natural-breaks split over all superpixels of the step.
``balanced``  ``step`` with class-balanced superpixel scores (Cai et al. 2021).
``capped``    dbsal with smoothed pre-labels and at most 40 regions (superpixels) per image, the
              least confident: what Label Studio can draw quickly as polygons.
``class``     dbsal with smoothed pre-labels and one region per predicted class (the fewest brush
              layers: for a config without polygons).
``default``   the backend's default settings for a config with PolygonLabels (one of the
              above; the README says which); ``default_brush``: for BrushLabels alone.
``self_labeled`` the default, fine-tuning on its own confident pre-labels (probability >= 0.9)
              where nobody labeled (:attr:`~dbsal_backend.training.Recipe.self_label`).
``class_self_labeled`` the default, fine-tuning on each class's most confident 20% of the
              unlabeled pixels it is the pre-label of
              (:attr:`~dbsal_backend.training.Recipe.self_label_share`).
``diverse``   the default, querying the most uncertain image of each of ``images`` layout
              clusters of the ``3 x images`` most uncertain (``QueryPolicy.diversity``).
``spread``    the default asking half as much of twice as many images: 20 images a step, at
              most 20 regions each (whatever ``--images-per-step`` says).
``wide``      the default with 20 images a step (whatever ``--images-per-step`` says).
``default_balanced`` the default with class-balanced superpixel scores (Cai et al. 2021;
              ``DBSAL_CLASS_BALANCED``): the split and the 40 regions favour rare predicted
              classes.
``random``    random whole images.
``control``   no new labels: the seed model fine-tuned again at every step, as the others are
              (what the extra training alone gives; compared step by step, not by clicks).
``full``      every pool image, whole (one record).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from .active import QueryPolicy, StepResult, active_step
from .annotator import Answer, ClickModel, SimulatedAnnotator
from .constants import IGNORE_INDEX
from .data import fit_side, load_split, resize_nearest
from .files import atomic_write
from .label_maps import inverse_sqrt_weights, pixel_counts
from .metrics import evaluate
from .networks import build_model, pick_device
from .scoring import Scorer
from .selection import random_images
from .superpixels import SlicParams, SuperpixelCache
from .training import Recipe, class_weights, fit

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Strategy:
    """One way to spend labeling effort.

    ``kind`` is ``"regions"`` (an active-learning step with ``policy`` on ``superpixels``),
    ``"random"`` (whole random images), ``"none"`` (no new labels, training only) or ``"full"``
    (the whole pool). A ``static`` policy with
    ``match`` set takes its fraction from the named strategy's mean share of queried
    superpixels in the same seed. ``self_label`` and ``self_label_share`` are the
    fine-tuning's :attr:`~dbsal_backend.training.Recipe.self_label` and
    :attr:`~dbsal_backend.training.Recipe.self_label_share` (they replace the recipe's; the
    seed model and ``full`` train without them). ``images_per_step`` overrides the run's
    (:attr:`SimConfig.images_per_step`) for a ``regions`` strategy.
    """

    name: str
    kind: str = "regions"
    policy: QueryPolicy | None = None
    superpixels: SlicParams = field(default_factory=SlicParams)
    match: str | None = None
    self_label: float | None = None
    self_label_share: float | None = None
    images_per_step: int | None = None


def product_default(polygons: bool = True) -> Strategy:
    """The backend's default policy and superpixels (its settings with nothing set), for a
    config with PolygonLabels (``default``) or with BrushLabels alone (``default_brush``)."""
    from .settings import Settings

    defaults = Settings.model_validate({})
    return Strategy("default" if polygons else "default_brush",
                    policy=defaults.query_policy(polygons), superpixels=defaults.slic_params(),
                    self_label=defaults.recipe().self_label,
                    self_label_share=defaults.recipe().self_label_share)


_PAPER = QueryPolicy(split="natural_breaks", scope="image", grouping="superpixel")
_SLICO = SlicParams(algorithm="SLICO", n_segments=300)
_COARSE = SlicParams(algorithm="SLIC", n_segments=150, ruler=5.0)

#: The strategies the simulator knows, by name (see the module docstring).
STRATEGIES: dict[str, Strategy] = {s.name: s for s in (
    Strategy("dbsal", policy=_PAPER, superpixels=_SLICO),
    Strategy("static", policy=replace(_PAPER, split="static"), superpixels=_SLICO,
             match="dbsal"),
    Strategy("merged", policy=replace(_PAPER, grouping="connected"), superpixels=_SLICO),
    Strategy("smoothed", policy=replace(_PAPER, grouping="connected", smoothing=2), superpixels=_SLICO),
    Strategy("coarse", policy=replace(_PAPER, grouping="connected", smoothing=2), superpixels=_COARSE),
    Strategy("step", policy=replace(_PAPER, grouping="connected", smoothing=2, scope="step"),
             superpixels=_COARSE),
    Strategy("balanced", policy=replace(_PAPER, grouping="connected", smoothing=2, scope="step",
                                        class_balanced=True), superpixels=_COARSE),
    product_default(),
    Strategy("capped", policy=replace(_PAPER, smoothing=2, max_regions=40), superpixels=_SLICO),
    Strategy("class", policy=replace(_PAPER, grouping="class", smoothing=2, max_regions=40),
             superpixels=_SLICO),
    product_default(polygons=False),
    replace(product_default(), name="self_labeled", self_label=0.9, self_label_share=None),
    replace(product_default(), name="class_self_labeled", self_label=None,
            self_label_share=0.2),
    replace(product_default(), name="diverse",
            policy=replace(product_default().policy, diversity=3)),
    replace(product_default(), name="spread", images_per_step=20,
            policy=replace(product_default().policy, max_regions=20)),
    replace(product_default(), name="wide", images_per_step=20),
    replace(product_default(), name="default_balanced",
            policy=replace(product_default().policy, class_balanced=True)),
    Strategy("random", kind="random"),
    Strategy("control", kind="none"),
    Strategy("full", kind="full"),
)}


# --------------------------------------------------------------------------------------------
# Configuration and records
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SimConfig:
    """Settings of a simulation (all recorded in the results)."""

    n_classes: int
    init_images: int = 10
    images_per_step: int = 10
    steps: int = 5
    arch: str = "efficientnet_lite0"
    pretrained: bool = True
    heuristic: str = "entropy"
    mc_samples: int = 20
    max_side: int = 512
    recipe: Recipe = field(default_factory=Recipe)
    first_epochs: int = 120
    full_epochs: int | None = None
    clicks: ClickModel = field(default_factory=ClickModel)
    device: str = "auto"
    cache_dir: str = ".sim-cache"


@dataclass
class SimulatedStep:
    """One step of one strategy and seed. Counts are cumulative (seed set included) except
    ``prelabels_*`` and ``regions_per_image``, which describe this step's queries."""

    step: int
    images: int
    regions: int
    corrections: int
    clicks: int
    pixels: int
    pixels_fraction: float
    miou: float
    regions_per_image: list[int] = field(default_factory=list)
    superpixel_fraction: list[float] = field(default_factory=list)
    prelabels_right: int = 0
    prelabels_judged: int = 0
    seconds: float = 0.0

    @property
    def prelabel_accuracy(self) -> float | None:
        return self.prelabels_right / self.prelabels_judged if self.prelabels_judged else None


@dataclass
class _Tally:
    images: int = 0
    regions: int = 0
    corrections: int = 0
    clicks: int = 0
    pixels: int = 0

    def add(self, answer: Answer, image: bool = True) -> None:
        self.images += int(image)
        self.regions += answer.regions
        self.corrections += answer.corrections
        self.clicks += answer.clicks
        self.pixels += answer.pixels


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------
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
        self._seed_models: dict[int, tuple[dict, float]] = {}
        self._mean_fraction: dict[tuple[str, int], float] = {}

    # -- pieces -------------------------------------------------------------------------------
    def seed_set(self, seed: int) -> list[int]:
        """The seed set of ``seed``: ``init_images`` random pool images."""
        rng = np.random.default_rng(seed)
        return sorted(random_images(list(range(len(self.pool_images))), self.cfg.init_images, rng))

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
        with the self-labels of ``strategy`` (none without one)."""
        idx = sorted(labeled)
        images = [fit_side(self.pool_images[i], self.cfg.max_side) for i in idx]
        labels = [resize_nearest(labeled[i], *im.shape[:2]) for i, im in zip(idx, images)]
        recipe = replace(self.cfg.recipe, seed=seed, epochs=epochs or self.cfg.recipe.epochs,
                         self_label=strategy.self_label if strategy else None,
                         self_label_share=strategy.self_label_share if strategy else None)
        fit(model, images, labels, recipe, self.device)
        return model

    def evaluate(self, model) -> float:
        return float(evaluate(model, self.val_images, self.val_labels, self.cfg.n_classes,
                              self.cfg.max_side)["miou"])

    def _seed_model(self, seed: int, labeled: dict[int, np.ndarray]):
        """The model trained on the seed set and its mIoU, trained once per seed (and kept in
        ``cache_dir/seed_models``, keyed by everything it depends on, for later runs)."""
        if seed not in self._seed_models:
            path = Path(self.cfg.cache_dir) / "seed_models" / f"{self._seed_key(seed, labeled)}.pt"
            saved = None
            if path.exists():
                try:
                    saved = torch.load(path, map_location="cpu", weights_only=True)
                    self._seed_models[seed] = (saved["state"], float(saved["miou"]))
                    log.info("seed %d: seed model from %s", seed, path)
                except Exception as exc:  # a damaged file is trained again and replaced
                    log.warning("seed %d: cannot read %s (%s); training again", seed, path, exc)
                    saved = None
            if saved is None:
                model = self.train(self.new_model(seed), labeled, seed, self.cfg.first_epochs)
                state = _cpu_state(model)
                self._seed_models[seed] = (state, self.evaluate(model))
                _save(path, {"state": state, "miou": self._seed_models[seed][1]})
        state, miou0 = self._seed_models[seed]
        model = self.new_model(seed)
        model.load_state_dict(state)
        return model.to(self.device).eval(), miou0

    def _seed_key(self, seed: int, labeled: dict[int, np.ndarray]) -> str:
        """A digest of what the seed model depends on: the model and training settings, the
        device type, torch's version, the seed set and the validation split (its mIoU)."""
        cfg = self.cfg
        digest = hashlib.sha256(json.dumps({
            "arch": cfg.arch, "n_classes": cfg.n_classes, "pretrained": cfg.pretrained,
            "max_side": cfg.max_side, "epochs": cfg.first_epochs, "seed": seed,
            "recipe": _jsonable(asdict(replace(cfg.recipe, seed=seed, epochs=cfg.first_epochs,
                                               self_label=None,
                                               self_label_share=None))),
            "device": self.device.type, "torch": torch.__version__, "images": sorted(labeled),
        }, sort_keys=True).encode())
        for i in sorted(labeled):
            digest.update(np.ascontiguousarray(self.pool_images[i]).tobytes())
            digest.update(np.ascontiguousarray(labeled[i]).tobytes())
        for image, label in zip(self.val_images, self.val_labels):
            digest.update(np.ascontiguousarray(image).tobytes())
            digest.update(np.ascontiguousarray(label).tobytes())
        return digest.hexdigest()[:24]

    def _record(self, step: int, tally: _Tally, miou: float, t0: float, **extra) -> SimulatedStep:
        return SimulatedStep(step=step, images=tally.images, regions=tally.regions,
                          corrections=tally.corrections, clicks=tally.clicks, pixels=tally.pixels,
                          pixels_fraction=tally.pixels / self.total_pixels, miou=miou,
                          seconds=round(time.perf_counter() - t0, 1), **extra)

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
            tally = _Tally()
            for i in range(len(self.pool_images)):
                tally.add(self.whole(i))
            labeled = {i: self.pool_labels[i] for i in range(len(self.pool_images))}
            model = self.train(self.new_model(seed), labeled, seed,
                              cfg.full_epochs or cfg.first_epochs)
            return [self._record(0, tally, self.evaluate(model), t0)]

        model, labeled, tally, miou0 = self.seed_start(seed)
        records = [self._record(0, tally, miou0, t0)]
        log.info("%s seed %d step 0: mIoU %.4f, %d clicks", strategy.name, seed, miou0,
                 tally.clicks)
        policy = self._policy(strategy, seed)
        rng = np.random.default_rng(seed + 1000)
        progress = _Progress(self._progress_path(strategy, policy, seed, labeled))
        saved = progress.load(cfg.steps)
        if saved is not None and resume:
            model.load_state_dict(saved["model"])
            labeled = {int(i): label.numpy() for i, label in zip(saved["keys"], saved["labels"])}
            tally = _Tally(**saved["tally"])
            records = [SimulatedStep(**r) for r in saved["records"]]
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
            model = self.train(model, labeled, seed + step, strategy=strategy)
            records.append(self._record(step, tally, self.evaluate(model), t0, **extra))
            progress.save(step, model, labeled, tally, records, rng)
            if on_step is not None:
                on_step(step, model, labeled)
            r = records[-1]
            log.info("%s seed %d step %d: mIoU %.4f, %d clicks, pre-labels %s, %.0fs",
                     strategy.name, seed, step, r.miou, r.clicks, r.prelabel_accuracy, r.seconds)
        if strategy.kind == "regions":
            fractions = [f for r in records for f in r.superpixel_fraction]
            self._mean_fraction[(strategy.name, seed)] = float(np.mean(fractions))
        return records

    def _progress_path(self, strategy: Strategy, policy: QueryPolicy | None, seed: int,
                       labeled: dict[int, np.ndarray]) -> Path:
        """Where a run keeps its last step: named by a digest of everything its steps depend
        on (the seed model's key, the strategy with its resolved policy, the settings) but the
        number of steps, so that a longer run of the same settings takes up where it ended."""
        digest = hashlib.sha256(json.dumps({
            "seed_model": self._seed_key(seed, labeled),
            "strategy": _jsonable(asdict(replace(strategy, policy=policy))),
            "settings": _jsonable(asdict(replace(self.cfg, steps=0, device="", cache_dir=""))),
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

    def seed_start(self, seed: int) -> tuple[torch.nn.Module, dict[int, np.ndarray], _Tally,
                                             float]:
        """What every strategy of ``seed`` starts from: the seed model, the seed set's labels,
        their cost and the model's mIoU."""
        tally = _Tally()
        labeled: dict[int, np.ndarray] = {}
        for i in self.seed_set(seed):
            answer = self.whole(i)
            labeled[i] = answer.labels
            tally.add(answer)
        model, miou0 = self._seed_model(seed, labeled)
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
               labeled: dict[int, np.ndarray], tally: _Tally, seed: int) -> dict:
        """One product step on the unlabeled pool; the annotator answers every query."""
        result = self.step(self.scorer(model, labeled, seed), strategy, policy, labeled, seed)
        extra = {"regions_per_image": [], "superpixel_fraction": [], "prelabels_right": 0,
                 "prelabels_judged": 0}
        for query in result.queries:
            answer = self.annotator.review(self.pool_labels[query.key], query.superpixels,
                                           query.regions)
            labeled[query.key] = answer.labels
            tally.add(answer)
            extra["regions_per_image"].append(len(query.regions))
            extra["superpixel_fraction"].append(query.n_superpixels / query.table_size)
            extra["prelabels_right"] += answer.prelabels_right
            extra["prelabels_judged"] += answer.prelabels_judged
        return extra


class _Progress:
    """A run's last finished step on disk (model, labels, tallies, records, random states), so
    that a run stopped, or one asked for more steps later, goes on from there. One file per
    run, replaced atomically after every step; never replaced by an earlier step (a shorter
    run of the same settings leaves a longer one's file alone); a damaged file is ignored."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.step: int | None = None  # the step of the file on disk

    def load(self, steps: int) -> dict | None:
        """The saved state if its step is at most ``steps``, else None."""
        if not self.path.exists():
            return None
        try:
            saved = torch.load(self.path, map_location="cpu", weights_only=True)
            self.step = int(saved["step"])
        except Exception as exc:
            log.warning("cannot read %s (%s); running from the start", self.path, exc)
            return None
        return saved if self.step <= steps else None

    def save(self, step: int, model: torch.nn.Module, labeled: dict[int, np.ndarray],
             tally: _Tally, records: list[SimulatedStep], rng: np.random.Generator) -> None:
        if self.step is not None and self.step > step:
            return
        keys = sorted(labeled)
        state = {"step": step, "keys": keys,
                 "labels": [torch.from_numpy(np.ascontiguousarray(labeled[i])) for i in keys],
                 "model": _cpu_state(model),
                 "tally": asdict(tally), "records": [asdict(r) for r in records],
                 "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state()}
        _save(self.path, state)
        self.step = step


def _cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _save(path: Path, obj: dict) -> None:
    """``torch.save`` that replaces ``path`` whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as handle:
        torch.save(obj, handle)


# --------------------------------------------------------------------------------------------
# Results: aggregation, comparison at equal clicks, plots
# --------------------------------------------------------------------------------------------
def _interp(xs: Sequence[float], ys: Sequence[float], x: float) -> float | None:
    """Linear interpolation on a curve; None outside it."""
    if not xs or x < xs[0] - 1e-9 or x > xs[-1] + 1e-9:
        return None
    return float(np.interp(x, xs, ys))


def aggregate(runs: dict[str, dict[int, list[SimulatedStep]]]) -> dict[str, list[dict]]:
    """Mean over seeds per step: the ``strategies`` block of the results JSON."""
    out = {}
    for name, by_seed in runs.items():
        n_steps = min(len(r) for r in by_seed.values())
        rows = []
        for s in range(n_steps):
            recs = [r[s] for r in by_seed.values()]
            per_image = [n for r in recs for n in r.regions_per_image]
            right = sum(r.prelabels_right for r in recs)
            judged = sum(r.prelabels_judged for r in recs)
            rows.append({
                "step": s,
                "images": float(np.mean([r.images for r in recs])),
                "regions": float(np.mean([r.regions for r in recs])),
                "corrections": float(np.mean([r.corrections for r in recs])),
                "clicks": float(np.mean([r.clicks for r in recs])),
                "pixels_fraction": float(np.mean([r.pixels_fraction for r in recs])),
                "miou": float(np.mean([r.miou for r in recs])),
                "miou_std": float(np.std([r.miou for r in recs])),
                "seeds": len(recs),
                "regions_per_image_median": float(np.median(per_image)) if per_image else None,
                "prelabel_accuracy": right / judged if judged else None,
            })
        out[name] = rows
    return out


def compare_at_clicks(runs: dict[str, dict[int, list[SimulatedStep]]], reference: str,
                      others: Sequence[str], anchor: str | None = None) -> dict[str, list[dict]]:
    """Paired differences at equal clicks: for each post-seed step of ``reference`` and each
    seed, the other strategy's mIoU interpolated (linearly, on its own curve of that seed) at
    the reference's clicks. ``None`` where the other curve does not reach that far.

    With ``anchor`` (the ``control``: no new labels, the same training), the other curve at
    step ``s`` starts from the anchor's point at step ``s`` instead of the seed model: every
    point compared has had at least as much training as the reference's, so a cheap step is
    not credited with what the extra fine-tuning alone gives."""
    out = {}
    ref = runs[reference]
    for other in others:
        if other not in runs or other == reference:
            continue
        rows = []
        n_steps = min(len(r) for r in ref.values())
        for s in range(1, n_steps):
            diffs = []
            for seed, records in ref.items():
                theirs = runs[other].get(seed)
                if not theirs:
                    continue
                if anchor is not None:
                    base = runs[anchor].get(seed)
                    if not base or len(base) <= s or len(theirs) <= s:
                        continue
                    theirs = [base[s]] + theirs[s:]
                value = _interp([r.clicks for r in theirs], [r.miou for r in theirs],
                                records[s].clicks)
                if value is not None:
                    diffs.append(records[s].miou - value)
            rows.append({"step": s, "clicks": float(np.mean([r[s].clicks for r in ref.values()])),
                         "miou_difference": float(np.mean(diffs)) if diffs else None,
                         "std": float(np.std(diffs)) if diffs else None, "seeds": len(diffs)})
        out[other] = rows
    return out


def compare_at_steps(runs: dict[str, dict[int, list[SimulatedStep]]], reference: str,
                     other: str) -> list[dict]:
    """Paired differences step by step (same seed, same step): for a strategy whose clicks do
    not grow (``control``), how much of the reference's gain its labels bring."""
    ref, theirs = runs[reference], runs[other]
    rows = []
    for s in range(1, min(len(r) for r in ref.values())):
        diffs = [records[s].miou - theirs[seed][s].miou for seed, records in ref.items()
                 if seed in theirs and len(theirs[seed]) > s]
        rows.append({"step": s, "miou_difference": float(np.mean(diffs)) if diffs else None,
                     "std": float(np.std(diffs)) if diffs else None, "seeds": len(diffs)})
    return rows


def mean_difference(rows: list[dict]) -> float | None:
    """Mean of the per-step differences that exist."""
    values = [r["miou_difference"] for r in rows if r["miou_difference"] is not None]
    return float(np.mean(values)) if values else None


def clicks_to_reach(rows: list[dict], miou: float) -> float | None:
    """Clicks at which a mean curve first reaches ``miou`` (interpolated); None if never."""
    for a, b in zip(rows, rows[1:]):
        if a["miou"] >= miou:
            return a["clicks"]
        if b["miou"] >= miou:
            t = (miou - a["miou"]) / (b["miou"] - a["miou"])
            return a["clicks"] + t * (b["clicks"] - a["clicks"])
    return rows[0]["clicks"] if rows and rows[0]["miou"] >= miou else None


def plot(strategies: dict[str, list[dict]], path: str | Path, title: str = "") -> None:
    """Two panels: mIoU against clicks and against labeled pixels, one line per strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, key, label in ((axes[0], "clicks", "annotator clicks"),
                           (axes[1], "pixels_fraction", "pixels labeled (share of pool)")):
        for name, rows in strategies.items():
            y = np.array([r["miou"] for r in rows]) * 100
            if name == "full":
                ax.axhline(y[0], color="black", ls="--", lw=1, label=f"full ({y[0]:.1f})")
                continue
            x = np.array([r[key] for r in rows])
            sd = np.array([r["miou_std"] for r in rows]) * 100
            ax.plot(x, y, marker="o", ms=3, label=name)
            ax.fill_between(x, y - sd, y + sd, alpha=0.12)
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("validation mIoU (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dbsal_backend.simulate", description=__doc__,
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
    p.add_argument("--init-images", type=int, default=10)
    p.add_argument("--images-per-step", type=int, default=10)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--arch", default="efficientnet_lite0")
    p.add_argument("--pretrained", choices=("true", "false"), default="true",
                   help="ImageNet encoder weights")
    p.add_argument("--heuristic", default="entropy")
    p.add_argument("--mc-samples", type=int, default=20)
    p.add_argument("--max-side", type=int, default=512)
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
    p.add_argument("--device", default="auto")
    p.add_argument("--cache-dir", default=".sim-cache")
    p.add_argument("--out", default="simulation.json")
    p.add_argument("--plot", default=None, help="PNG (default: next to --out)")
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
        result = combine([json.loads(Path(f).read_text()) for f in args.combine], args.default)
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

    settings = {**_jsonable(asdict(cfg)), "data": str(args.data), "seeds": args.seeds,
                "strategies": {n: _jsonable(asdict(STRATEGIES[n])) for n in names},
                "pool_images": len(pool_x), "val_images": len(val_x),
                "image_size": list(pool_x[0].shape[:2]), "device": str(sim.device),
                "torch_threads": torch.get_num_threads()}
    result = results(runs, settings, args.default or names[0], _cost_model_text(cfg.clicks),
                     f"{Path(args.data).name}: mIoU against annotator effort")
    result["seconds"] = round(time.perf_counter() - started, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    plot(result["strategies"], args.plot or out.with_suffix(".png"), result["title"])
    print(summary(result))
    return result


def results(runs: dict[str, dict[int, list[SimulatedStep]]], settings: dict, default: str,
            cost_model: str, title: str) -> dict:
    """The results document: settings, cost model, mean curves, the comparison at equal clicks,
    full supervision's share, and every run."""
    names = list(runs)
    strategies = aggregate(runs)
    comparison = compare_at_clicks(runs, default, [n for n in names
                                                   if n not in (default, "full", "control")])
    result = {
        "title": title,
        "settings": settings,
        "cost_model": cost_model,
        "default_strategy": default,
        "strategies": strategies,
        "at_equal_clicks": {"reference": default, "differences": comparison,
                            "mean_over_steps": {n: mean_difference(rows)
                                                for n, rows in comparison.items()}},
        "runs": {n: {str(s): [asdict(r) for r in recs] for s, recs in by.items()}
                 for n, by in runs.items()},
    }
    if "control" in runs and default in runs:
        result["against_control"] = compare_at_steps(runs, default, "control")
        same = compare_at_clicks(runs, default, [n for n in names
                                                 if n not in (default, "full", "control")],
                                 anchor="control")
        result["at_equal_clicks_and_training"] = {
            "reference": default, "anchor": "control", "differences": same,
            "mean_over_steps": {n: mean_difference(rows) for n, rows in same.items()}}
    if "full" in strategies and default in strategies:
        full = strategies["full"][0]
        reach = clicks_to_reach(strategies[default], 0.9 * full["miou"])
        result["full_supervision"] = {
            "miou": full["miou"], "clicks": full["clicks"],
            "clicks_for_90_percent": reach,
            "share_of_full_clicks": reach / full["clicks"] if reach is not None else None}
    return result


def combine(documents: list[dict], default: str | None = None) -> dict:
    """One results document from several runs' (same settings but the seeds and strategies).

    The settings are those of the first run of the default strategy (of the first run when none
    has it); ``combined_from`` says, per run, which settings differ from them."""
    runs: dict[str, dict[int, list[SimulatedStep]]] = {}
    default = default or documents[0]["default_strategy"]
    base = next((d for d in documents if default in d["runs"]), documents[0])
    settings = dict(base["settings"])
    settings["seeds"] = sorted({s for d in documents for s in d["settings"]["seeds"]})
    settings["strategies"] = {k: v for d in documents for k, v in d["settings"]["strategies"].items()}
    settings["combined_from"] = [
        {"seeds": d["settings"]["seeds"], "strategies": list(d["runs"]), "seconds": d.get("seconds"),
         "differs": {k: v for k, v in d["settings"].items()
                     if k not in ("seeds", "strategies") and v != base["settings"].get(k)}}
        for d in documents]
    for document in documents:
        for name, by_seed in document["runs"].items():
            for seed, records in by_seed.items():
                runs.setdefault(name, {})[int(seed)] = [SimulatedStep(**r) for r in records]
    return results(runs, settings, default, base["cost_model"], base["title"])


def _cost_model_text(clicks: ClickModel) -> str:
    return (f"whole image: per class and connected part of >= {100 * clicks.min_part:g}% of "
            f"the image, the vertices of its outline after cv2.approxPolyDP (tolerance "
            f"{clicks.tolerance} px at full size) + {clicks.label_click} label click; reviewed "
            f"region: 0 clicks if the pre-label is the true dominant class, else "
            f"{clicks.relabel_clicks}; every part of another class >= "
            f"{100 * clicks.min_part:g}% of the image inside it repainted as a polygon (priced "
            f"as above); void pixels cost nothing")


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def summary(result: dict) -> str:
    """A short text table of the mean curves and the comparison at equal clicks."""
    lines = []
    for name, rows in result["strategies"].items():
        cells = ", ".join(f"{r['clicks']:.0f}:{100 * r['miou']:.1f}" for r in rows)
        lines.append(f"{name:>9}  clicks:mIoU  {cells}")
    means = result["at_equal_clicks"]["mean_over_steps"]
    for name, value in means.items():
        if value is not None:
            lines.append(f"{result['default_strategy']} - {name} at equal clicks: "
                         f"{100 * value:+.2f} mIoU (mean over steps)")
    for name, value in result.get("at_equal_clicks_and_training", {}).get(
            "mean_over_steps", {}).items():
        if value is not None:
            lines.append(f"{result['default_strategy']} - {name} at equal clicks, curves from "
                         f"the control: {100 * value:+.2f} mIoU (mean over steps)")
    if "against_control" in result:
        cells = ", ".join(f"{100 * r['miou_difference']:+.1f}" for r in result["against_control"]
                          if r["miou_difference"] is not None)
        lines.append(f"{result['default_strategy']} - control (same step): {cells}")
    if "full_supervision" in result:
        lines.append(f"full supervision: {result['full_supervision']}")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
