"""Pure selection rules: image ranking, the two-group split of superpixel scores, baselines.

Images are ranked by uncertainty (:func:`rank_images`), optionally with diversity
(:func:`diverse_top`): the most uncertain images of a pool drawn from video are often
consecutive frames of one scene, and asking about ten near copies teaches the model about one
scene ten times. :func:`diverse_top` groups the most uncertain candidates by their predicted
scene :func:`layout` and takes the most uncertain image of each group.

The DBSAL split divides one image's superpixel scores into a high- and a low-uncertainty group
with the exact two-class natural breaks (:func:`natural_breaks_split`); only the high group is
queried. :func:`kmeans_split` (a heuristic) and :func:`static_split` (a fixed top fraction, the
static-budget baseline) are the alternatives. Every split returns a boolean "high" mask.

Edge cases shared by the natural-breaks and k-means splits: an empty input gives an empty mask;
fewer than two distinct values (one superpixel, constant scores) gives all ``True``, because
nothing distinguishes the regions and the whole image is queried; equal scores always land in the
same group. Scores must be finite.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from . import defaults

__all__ = [
    "LAYOUT_GRID",
    "SPLIT_METHODS",
    "diverse_top",
    "farthest_first",
    "kmeans_split",
    "layout",
    "natural_breaks_split",
    "natural_breaks_threshold",
    "random_images",
    "rank_images",
    "split_superpixels",
    "static_split",
    "within_group_sse",
]

#: Names accepted by :func:`split_superpixels`.
SPLIT_METHODS = ("natural_breaks", "kmeans", "static")


def _scores_1d(scores: Any, name: str = "scores") -> np.ndarray:
    """``scores`` as a finite 1-D float64 array, or a clear error."""
    x = np.asarray(scores)
    if x.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {x.shape}")
    if x.dtype == bool or not (np.issubdtype(x.dtype, np.integer)
                               or np.issubdtype(x.dtype, np.floating)):
        raise TypeError(f"{name} must be real numbers, got dtype {x.dtype}")
    x = x.astype(np.float64, copy=False)
    if not np.isfinite(x).all():
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return x


# ---------------------------------------------------------------- ranking


def rank_images(scores: Mapping[Hashable, float] | Any, k: int,
                exclude: Iterable[Hashable] = ()) -> list:
    """The ``k`` highest-scoring images, most uncertain first.

    Parameters
    ----------
    scores : mapping or array_like
        ``key -> score`` (e.g. task id -> uncertainty) or a 1-D array indexed by image.
    k : int
        How many to return; fewer if fewer are left after ``exclude``.
    exclude : iterable
        Keys (or indices) never returned, e.g. images already labeled.

    Returns
    -------
    list
        Keys (for a mapping) or ``int`` indices (for an array). Ties go to the smaller key or
        index, so the result is deterministic; mapping keys must therefore be mutually comparable.
    """
    excluded = set(exclude)
    if isinstance(scores, Mapping):
        keys = list(scores)
        values = _scores_1d(np.array([scores[key] for key in keys], dtype=float))
        try:
            order = sorted(range(len(keys)), key=lambda i: (-values[i], keys[i]))
        except TypeError as err:
            raise TypeError("score keys must be mutually comparable to break ties") from err
        ranked = [keys[i] for i in order]
    else:
        values = _scores_1d(scores)
        ranked = np.argsort(-values, kind="stable").tolist()
    return [key for key in ranked if key not in excluded][:k]


#: Rows and columns of the :func:`layout` grid.
LAYOUT_GRID = 4


def layout(predicted: np.ndarray, n_classes: int, grid: int = LAYOUT_GRID) -> np.ndarray:
    """An image's predicted scene layout: the share of each class in each cell of a
    ``grid x grid`` division of ``predicted`` (an ``h x w`` class map; other values count for
    no class), as a ``float32`` vector of ``grid * grid * n_classes``."""
    predicted = np.asarray(predicted)
    if predicted.ndim != 2 or min(predicted.shape) < grid or n_classes < 1 or grid < 1:
        raise ValueError("layout needs a 2-D class map of at least grid x grid pixels, "
                         "n_classes >= 1 and grid >= 1")
    out = np.zeros((grid, grid, n_classes), np.float32)
    for i, band in enumerate(np.array_split(predicted, grid, axis=0)):
        for j, cell in enumerate(np.array_split(band, grid, axis=1)):
            known = cell[(cell >= 0) & (cell < n_classes)].astype(np.int64)
            out[i, j] = np.bincount(known, minlength=n_classes) / cell.size
    return out.ravel()


def diverse_top(scores: Mapping[Hashable, float], features: Mapping[Hashable, Any], k: int,
                candidates: int, iterations: int = 20) -> list:
    """``k`` images that are uncertain and unlike each other, most uncertain first.

    The ``candidates`` most uncertain images (:func:`rank_images`) are grouped into ``k``
    clusters by k-means on their ``features`` (e.g. :func:`layout`), started farthest-first
    from the most uncertain image, so deterministic; the most uncertain image of each cluster
    is taken. Clusters left empty are made up by the most uncertain images not taken. With
    ``candidates <= k`` this is :func:`rank_images` (``scores``, ``k``).
    """
    if iterations < 1:
        raise ValueError("iterations must be >= 1")
    ranked = rank_images(scores, max(k, candidates))
    if candidates <= k or len(ranked) <= k:
        return ranked[:k]
    missing = [key for key in ranked if key not in features]
    if missing:
        raise ValueError(f"no features for {len(missing)} candidate images, e.g. {missing[0]!r}")
    x = np.stack([np.asarray(features[key], dtype=np.float64).ravel() for key in ranked])
    centre = x[farthest_first(x, k)]  # ties: the more uncertain image
    assign = np.full(len(ranked), -1)
    for _ in range(iterations):
        new = np.argmin(((x[:, None, :] - centre[None]) ** 2).sum(2), axis=1)  # ties: earlier
        if np.array_equal(new, assign):
            break
        assign = new
        for j in range(len(centre)):
            if (assign == j).any():
                centre[j] = x[assign == j].mean(0)
    # ranked is most uncertain first, so a cluster's first member is its most uncertain image
    taken = {int(np.flatnonzero(assign == j)[0]) for j in range(len(centre)) if (assign == j).any()}
    rest = [i for i in range(len(ranked)) if i not in taken]
    chosen = sorted([*taken, *rest[:max(0, k - len(taken))]])
    return [ranked[i] for i in chosen]


def farthest_first(x: Any, k: int, first: int = 0) -> list[int]:
    """Rows of ``x`` (points, one a row) far from each other: ``first``, then again and again
    the row farthest (Euclidean) from those taken, ties to the earlier row, until ``k`` are
    taken or the rest are copies of taken rows (greedy k-centres, deterministic)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or not len(x):
        raise ValueError(f"x must be a non-empty 2-d array of points, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("features must be finite")
    if not 0 <= first < len(x):
        raise ValueError(f"first must index a row of x (0..{len(x) - 1}), got {first}")
    taken = [int(first)]
    nearest = ((x - x[first]) ** 2).sum(1)
    while len(taken) < k:
        far = int(np.argmax(nearest))
        if nearest[far] <= 0:
            break  # the rest are copies of taken rows
        taken.append(far)
        nearest = np.minimum(nearest, ((x - x[far]) ** 2).sum(1))
    return taken


# ---------------------------------------------------------------- splits


def within_group_sse(scores: Any, high: Any) -> float:
    """Total within-group sum of squared deviations of a two-group split (the Jenks cost).

    Parameters
    ----------
    scores : array_like
        Finite 1-D scores.
    high : array_like of bool
        The high-group mask, same length.
    """
    x = _scores_1d(scores)
    mask = np.asarray(high)
    if mask.dtype != bool or mask.shape != x.shape:
        raise ValueError(f"high must be a boolean mask of shape {x.shape}")
    return float(sum(((g - g.mean()) ** 2).sum() for g in (x[mask], x[~mask]) if g.size))


def natural_breaks_threshold(scores: Any) -> float:
    """Threshold of the exact two-class natural breaks: the high group is ``scores > threshold``.

    Two-class Jenks natural breaks is 1-D 2-means solved exactly: among all splits of the sorted
    scores between two consecutive *distinct* values, take the one with the smallest total
    within-group sum of squares. Computed in ``O(n log n)``: sort, centre (for numerical
    stability), prefix sums of ``x`` and ``x**2``, evaluate every split.

    Returns
    -------
    float
        The largest score of the low group; ``-inf`` when there are fewer than two distinct
        scores (everything is high). Among splits whose costs are equal up to a relative
        tolerance of ``1e-9`` of the total sum of squares, the highest threshold (the smallest
        high group) is taken.
    """
    x = np.sort(_scores_1d(scores))
    n = x.size
    if n == 0 or x[0] == x[-1]:
        return -math.inf
    c = x - x.mean()
    s1 = np.cumsum(c)
    s2 = np.cumsum(c * c)
    split = np.flatnonzero(x[1:] != x[:-1]) + 1  # low = x[:i], high = x[i:]
    n_low = split.astype(np.float64)
    n_high = n - n_low
    low_sum, low_sq = s1[split - 1], s2[split - 1]
    high_sum, high_sq = s1[-1] - low_sum, s2[-1] - low_sq
    cost = (low_sq - low_sum**2 / n_low) + (high_sq - high_sum**2 / n_high)
    tolerance = 1e-9 * s2[-1]
    best = split[np.flatnonzero(cost <= cost.min() + tolerance)[-1]]
    return float(x[best - 1])


def natural_breaks_split(scores: Any) -> np.ndarray:
    """High-group mask of the exact two-class natural breaks (see
    :func:`natural_breaks_threshold`); ``bool[n]``. Edge cases as in the module docstring."""
    x = _scores_1d(scores)
    return x > natural_breaks_threshold(x)


def kmeans_split(scores: Any, seed: int = 0) -> np.ndarray:
    """High-group mask from scikit-learn ``KMeans(n_clusters=2, n_init=10)`` on the scores.

    A heuristic alternative to :func:`natural_breaks_split` (which it usually, but not always,
    matches). High is the cluster with the larger centre. Edge cases as in the module docstring.
    """
    from sklearn.cluster import KMeans

    x = _scores_1d(scores)
    if x.size == 0 or x.min() == x.max():
        return np.ones(x.size, dtype=bool)
    model = KMeans(n_clusters=2, n_init=10, random_state=seed).fit(x.reshape(-1, 1))
    return model.labels_ == int(np.argmax(model.cluster_centers_[:, 0]))


def static_split(scores: Any, fraction: float) -> np.ndarray:
    """High mask of the top ``ceil(fraction * n)`` scores (the static-budget baseline).

    Ties are broken by index (earlier first), so equal scores may fall on both sides. The
    product ``fraction * n`` is rounded to 9 decimals before the ceiling, so that e.g.
    ``0.3 * 10`` selects 3, not 4. The DBSAL authors' static baseline used 0.275.
    """
    x = _scores_1d(scores)
    count = math.ceil(round(fraction * x.size, 9))
    mask = np.zeros(x.size, dtype=bool)
    mask[np.argsort(-x, kind="stable")[:count]] = True
    return mask


def split_superpixels(scores: Any, method: str = defaults.SPLIT,
                      fraction: float = defaults.STATIC_FRACTION, seed: int = 0) -> np.ndarray:
    """Split one image's superpixel scores; returns the ``bool[n]`` mask of the group to query.

    ``method`` is one of :data:`SPLIT_METHODS` (checked where a policy is made,
    :class:`~dbsal_backend.engine.active.QueryPolicy`); ``fraction`` is used by ``"static"`` only and
    ``seed`` by ``"kmeans"`` only.
    """
    if method == "kmeans":
        return kmeans_split(scores, seed=seed)
    if method == "static":
        return static_split(scores, fraction)
    return natural_breaks_split(scores)


def random_images(candidates: Sequence[Hashable], k: int, rng: np.random.Generator) -> list:
    """``min(k, len(candidates))`` distinct candidates drawn uniformly (random-images baseline).

    Parameters
    ----------
    candidates : sequence
        Distinct image keys.
    k : int
        How many to draw.
    rng : numpy.random.Generator
        Source of randomness.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    pool = list(candidates)
    if len(set(pool)) != len(pool):
        raise ValueError("candidates must be distinct")
    picked = rng.choice(len(pool), size=min(k, len(pool)), replace=False)
    return [pool[i] for i in picked]
