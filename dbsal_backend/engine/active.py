"""One active-learning step, without I/O: the same code for the backend and the simulator.

A step takes the unlabeled pool as an iterable of ``(key, image)`` pairs (whoever iterates it
may download, decode and prefetch; the step only computes), a :class:`~dbsal_backend.engine.scoring.
Scorer` and a function that gives an image's superpixels, and returns a :class:`StepResult`:

1. **Rank.** Every image is scored by MC dropout in batches; only the ``policy.images`` most
   uncertain (times ``policy.diversity``, see :class:`Ranking`) are kept with their maps and
   pixels (memory does not grow with the pool); every score is kept as a priority.
2. **Split.** The superpixels of each kept image are scored by the mean uncertainty of their
   pixels (optionally weighted by class,
   :func:`~dbsal_backend.engine.label_maps.inverse_sqrt_weights`) and split into a high and a low
   group: per image (``scope="image"``, the paper's dynamic budget) or once over all kept
   images (``scope="step"``, so the step's questions go wherever the model is unsure).
3. **Regions.** The high superpixels of an image become :class:`~dbsal_backend.engine.regions.Region`
   s, grouped by ``policy.grouping`` (per superpixel, connected same-class groups, or per
   class), least confident first, at most ``policy.max_regions`` per image, pre-labeled from
   the scorer's :meth:`~dbsal_backend.engine.scoring.Scorer.prelabels` of the kept images.
4. **Budget.** :func:`fit_budget` drops the most confident regions that do not fit what the
   budget has left.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Hashable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import cv2
import numpy as np

from . import defaults
from .checks import check_int
from .regions import (GROUPINGS, Region, adjacent_pairs, build_regions, smooth_labels,
                      superpixel_table)
from .scoring import Scorer, ScoreMap
from .selection import SPLIT_METHODS, diverse_top, layout, split_superpixels

__all__ = ["SCOPES", "Candidate", "Query", "QueryPolicy", "Ranking", "StepResult",
           "active_step", "decide", "fit_budget", "query_candidates"]

#: Where the high/low split is made.
SCOPES = ("image", "step")


@dataclass(frozen=True)
class QueryPolicy:
    """What a step asks people to label (checked once, here).

    Parameters
    ----------
    images : int
        Images queried per step (K).
    split : {"natural_breaks", "static", "kmeans"}
        How superpixel scores are split into a high (queried) and a low group.
    scope : {"image", "step"}
        Split each image's superpixels on their own, or all superpixels of the step's images
        together.
    static_fraction : float
        Share of superpixels the ``static`` split queries, in ``(0, 1]``.
    grouping : {"superpixel", "connected", "class"}
        What a region is: one superpixel, a connected group of queried superpixels with one
        predicted class, or every queried superpixel of one predicted class.
    class_balanced : bool
        Weight superpixel scores by the ``class_weights`` of their predicted class
        (:func:`~dbsal_backend.engine.label_maps.inverse_sqrt_weights` with ``unseen="rarest"``).
    max_regions : int, optional
        At most this many regions per image (the least confident).
    smoothing : int
        Rounds of :func:`~dbsal_backend.engine.regions.smooth_labels` on the predicted classes before
        the regions are formed (pre-labels only; what is queried does not change).
    diversity : int
        1: query the ``images`` most uncertain images. More: cluster the ``images *
        diversity`` most uncertain by their predicted :func:`~dbsal_backend.engine.selection.layout`
        and query the most uncertain image of each cluster
        (:func:`~dbsal_backend.engine.selection.diverse_top`), so that ten near copies of one scene
        (consecutive video frames) are not all asked about. A step then keeps that many
        candidate images in memory.
    """

    images: int = defaults.STEP_IMAGES
    split: str = defaults.SPLIT
    scope: str = defaults.SCOPE
    static_fraction: float = defaults.STATIC_FRACTION
    # The bare mechanism, not the backend's choice (defaults.REGIONS, MAX_REGIONS, SMOOTHING):
    # one connected region per class, no cap, no smoothing (the simulator's strategies rely on it).
    grouping: str = "connected"
    class_balanced: bool = defaults.CLASS_BALANCED
    max_regions: int | None = None
    smoothing: int = 0
    diversity: int = defaults.DIVERSITY

    def __post_init__(self) -> None:
        check_int("images", self.images, 1)
        if self.split not in SPLIT_METHODS:
            raise ValueError(f"split must be one of {SPLIT_METHODS}, got {self.split!r}")
        if self.grouping not in GROUPINGS:
            raise ValueError(f"grouping must be one of {GROUPINGS}, got {self.grouping!r}")
        if self.scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, got {self.scope!r}")
        if not 0 < self.static_fraction <= 1:
            raise ValueError(f"static_fraction must be in (0, 1], got {self.static_fraction!r}")
        check_int("smoothing", self.smoothing, 0)
        check_int("diversity", self.diversity, 1)
        if self.max_regions is not None:
            check_int("max_regions", self.max_regions, 1, " or None")


@dataclass
class Candidate:
    """A kept image: its key, its full-size pixels and what the model said about it."""

    key: Hashable
    image: np.ndarray
    scores: ScoreMap


@dataclass
class Query:
    """The question for one image: its superpixels and the regions to review.

    ``score`` is the image's uncertainty (its rank in the step), ``size`` the image's
    ``(height, width)``, ``superpixels`` the id map the regions refer to (the image's size, or
    smaller for a very large image: see ``SlicParams.max_pixels``) and ``table_size`` its
    number of superpixels.
    """

    key: Hashable
    score: float
    size: tuple[int, int]
    superpixels: np.ndarray
    regions: list[Region]
    table_size: int = 0

    @property
    def pixels(self) -> int:
        return sum(r.pixels for r in self.regions)

    @property
    def n_superpixels(self) -> int:
        return sum(len(r.superpixels) for r in self.regions)


@dataclass
class StepResult:
    """What a step decided: every scored image's uncertainty, and the queries (most uncertain
    image first; images whose regions all fell to the budget are left out)."""

    priorities: dict[Hashable, float]
    queries: list[Query]


class Ranking:
    """Keeps the most uncertain images seen (ties: the smaller key) and every score.

    ``top()`` gives ``k`` of them: the ``k`` most uncertain, or with ``diversity > 1`` the
    most uncertain of each cluster of the ``k * diversity`` most uncertain, clustered by their
    predicted layout (:func:`~dbsal_backend.engine.selection.diverse_top`; needs ``n_classes``).
    """

    def __init__(self, k: int, diversity: int = 1, n_classes: int | None = None) -> None:
        if diversity > 1 and n_classes is None:
            raise ValueError("a diverse ranking needs n_classes")
        self.k = k
        self.diversity = diversity
        self.n_classes = n_classes
        self.priorities: dict[Hashable, float] = {}
        self._heap: list[tuple[float, _Reversed, int, Candidate]] = []
        self._count = itertools.count()

    def add(self, candidate: Candidate) -> None:
        score = candidate.scores.score
        self.priorities[candidate.key] = score
        item = (score, _Reversed(candidate.key), next(self._count), candidate)
        if len(self._heap) < self.k * self.diversity:
            heapq.heappush(self._heap, item)
        elif item[:2] > self._heap[0][:2]:
            heapq.heapreplace(self._heap, item)

    def top(self) -> list[Candidate]:
        """The chosen candidates, most uncertain first."""
        kept = [c for *_, c in sorted(self._heap, key=lambda t: t[:2], reverse=True)]
        if self.diversity == 1:
            return kept
        by_key = {c.key: c for c in kept}
        chosen = diverse_top({c.key: c.scores.score for c in kept},
                             {c.key: layout(c.scores.predicted, self.n_classes) for c in kept},
                             self.k, len(kept))
        return [by_key[key] for key in chosen]


class _Reversed:
    """Orders keys backwards, so that on equal scores the smaller key ranks higher."""

    __slots__ = ("key",)

    def __init__(self, key: Hashable) -> None:
        self.key = key

    def __lt__(self, other: _Reversed) -> bool:
        return other.key < self.key  # type: ignore[operator]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Reversed) and self.key == other.key


def query_candidates(candidates: Sequence[Candidate],
                     superpixels_of: Callable[[np.ndarray], np.ndarray], policy: QueryPolicy,
                     n_classes: int, class_weights: np.ndarray | None = None,
                     seed: int = 0, workers: int = 1,
                     labels_of: Callable[[Sequence[np.ndarray]], list[np.ndarray]] | None = None,
                     ) -> list[Query]:
    """Steps 2 and 3 of the module docstring for the kept images (in their order); the
    superpixels and their tables of ``workers`` images at a time. ``labels_of(images)`` gives
    the classes the regions are pre-labeled with (:meth:`~dbsal_backend.engine.scoring.Scorer.
    prelabels`); without it, the scores' ``predicted``."""

    def describe(candidate: Candidate):
        sp = superpixels_of(candidate.image)
        height, width = sp.shape
        u = cv2.resize(candidate.scores.uncertainty, (width, height),
                       interpolation=cv2.INTER_LINEAR)
        classes = (candidate.scores.predicted if labels_of is None
                   else labels_of([candidate.image])[0])
        predicted = cv2.resize(classes, (width, height), interpolation=cv2.INTER_NEAREST)
        table = superpixel_table(sp, u, predicted, n_classes)
        pair = adjacent_pairs(sp) if policy.grouping == "connected" or policy.smoothing else None
        if policy.smoothing:
            table = smooth_labels(table, pair, policy.smoothing)
        score = table.uncertainty
        if policy.class_balanced and class_weights is not None:
            score = score * np.asarray(class_weights)[table.label]
        return table, sp, pair, score

    if workers > 1 and len(candidates) > 1:
        with ThreadPoolExecutor(min(workers, len(candidates))) as executor:
            described = list(executor.map(describe, candidates))
    else:
        described = [describe(candidate) for candidate in candidates]
    tables, maps, pairs, scores = (list(column) for column in zip(*described)) \
        if described else ([], [], [], [])
    if policy.scope == "step" and scores:
        high = split_superpixels(np.concatenate(scores), policy.split, policy.static_fraction,
                                 seed=seed)
        masks = np.split(high, np.cumsum([s.size for s in scores])[:-1])
    else:
        masks = [split_superpixels(s, policy.split, policy.static_fraction, seed=seed)
                 for s in scores]
    queries = []
    for candidate, table, sp, pair, mask in zip(candidates, tables, maps, pairs, masks):
        regions = build_regions(table, np.flatnonzero(mask), policy.grouping, pair)
        if policy.max_regions is not None:
            regions = regions[:policy.max_regions]
        queries.append(Query(candidate.key, candidate.scores.score, candidate.image.shape[:2], sp,
                             regions, len(table)))
    return queries


def fit_budget(queries: Sequence[Query], left: int | None, unit: str) -> list[Query]:
    """The queries trimmed to what a budget has ``left`` in ``unit``.

    Images keep their order; with ``unit="images"`` the first ``left`` images that have regions
    stay whole, else the least confident regions of the whole step are kept until the next one
    would not fit. Queries left without regions are dropped.
    """
    if left is None:
        return [q for q in queries if q.regions]
    if unit == "images":
        return [q for q in queries if q.regions][:left]
    cost = (lambda r: 1) if unit == "regions" else (lambda r: r.pixels)
    ranked = sorted(((r.confidence, qi, ri) for qi, q in enumerate(queries)
                     for ri, r in enumerate(q.regions)))
    keep: set[tuple[int, int]] = set()
    spent = 0
    for _, qi, ri in ranked:
        c = cost(queries[qi].regions[ri])
        if spent + c > left:
            break
        spent += c
        keep.add((qi, ri))
    out = []
    for qi, q in enumerate(queries):
        regions = [r for ri, r in enumerate(q.regions) if (qi, ri) in keep]
        if regions:
            out.append(replace(q, regions=regions))
    return out


def active_step(pool: Iterable[tuple[Hashable, np.ndarray]], scorer: Scorer,
                superpixels_of: Callable[[np.ndarray], np.ndarray], policy: QueryPolicy, *,
                budget_left: int | None = None, budget_unit: str = "regions",
                class_weights: np.ndarray | None = None, seed: int = 0,
                workers: int = 1) -> StepResult:
    """Score the pool and decide the step's queries (see the module docstring).

    Parameters
    ----------
    pool : iterable of (key, image)
        The unlabeled images (``uint8 H x W x 3``); keys must be mutually comparable.
    scorer : Scorer
        Scores batches of images.
    superpixels_of : callable
        ``superpixels_of(image)`` gives the full-size superpixel id map.
    policy : QueryPolicy
        What to ask.
    budget_left, budget_unit :
        What the labeling budget has left (None: unlimited), in which unit.
    class_weights : numpy.ndarray, optional
        Per-class weights for ``policy.class_balanced``.
    seed : int
        Seed of the k-means split.
    workers : int
        Batches scored at the same time (:meth:`~dbsal_backend.engine.scoring.Scorer.score_stream`),
        and kept images whose superpixels are made at the same time.
    """
    ranking = Ranking(policy.images, policy.diversity, scorer.n_classes)
    for key, image, scores in scorer.score_stream(pool, workers):
        ranking.add(Candidate(key, image, scores))
    return decide(ranking.top(), ranking.priorities, superpixels_of, policy, scorer.n_classes,
                  budget_left=budget_left, budget_unit=budget_unit, class_weights=class_weights,
                  seed=seed, workers=workers, labels_of=scorer.prelabels)


def decide(candidates: Sequence[Candidate], priorities: dict[Hashable, float],
           superpixels_of: Callable[[np.ndarray], np.ndarray], policy: QueryPolicy,
           n_classes: int, *, budget_left: int | None = None, budget_unit: str = "regions",
           class_weights: np.ndarray | None = None, seed: int = 0, workers: int = 1,
           labels_of: Callable[[Sequence[np.ndarray]], list[np.ndarray]] | None = None,
           ) -> StepResult:
    """Steps 2 to 4 for the kept images (most uncertain first) of a pool already ranked (here
    by :func:`active_step`, or on a cluster, see :mod:`dbsal_backend.server.compute`); ``workers``
    images' superpixels at a time, pre-labels from ``labels_of`` (see
    :func:`query_candidates`)."""
    queries = query_candidates(candidates, superpixels_of, policy, n_classes, class_weights,
                               seed=seed, workers=workers, labels_of=labels_of)
    return StepResult(dict(priorities), fit_budget(queries, budget_left, budget_unit))

