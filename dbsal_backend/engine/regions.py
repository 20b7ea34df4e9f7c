"""Queried superpixels as regions a person reviews (pure functions on arrays).

A :class:`Region` is what one brush region in Label Studio shows: one or more superpixels, the
class the model predicts for them (the pre-label) and how confident the model is there. With
``grouping="connected"`` adjacent queried superpixels that share their predicted class form one region
(one connected group per class), so a person checks one region where the model made one
decision, and the page draws far fewer brush layers. Regions are listed least confident first.

All maps are at the image's full size: ``superpixels`` (ids ``0..n-1``), ``uncertainty``
(normalised to ``[0, 1]``) and ``predicted`` (class per pixel).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .constants import IGNORE_INDEX

__all__ = ["ANSWERS", "GROUPINGS", "Region", "SuperpixelTable", "adjacent_pairs", "build_regions",
           "dominant_classes", "region_map",
           "smooth_labels", "superpixel_table"]


#: What a person does with a queried region: ``dominant`` (keep its pre-label or give the whole
#: region the class that covers most of it; Cai et al. 2021) or ``repaint`` (that, and repaint
#: the parts of other classes inside it).
ANSWERS = ("dominant", "repaint")


@dataclass(frozen=True)
class SuperpixelTable:
    """Per-superpixel summaries of one image (``n`` superpixels).

    Attributes
    ----------
    uncertainty : numpy.ndarray
        ``float64[n]``, mean normalised uncertainty of the superpixel's pixels.
    label : numpy.ndarray
        ``int64[n]``, the most frequent predicted class (ties: the lower class).
    size : numpy.ndarray
        ``int64[n]``, pixels.
    """

    uncertainty: np.ndarray
    label: np.ndarray
    size: np.ndarray

    def __len__(self) -> int:
        return int(self.size.size)


@dataclass(frozen=True)
class Region:
    """One region to review.

    Attributes
    ----------
    superpixels : tuple of int
        Its superpixel ids, ascending.
    label : int
        The pre-label: the model's class for it.
    confidence : float
        ``1 -`` the mean normalised uncertainty of its pixels, in ``[0, 1]``.
    pixels : int
        Its size.
    """

    superpixels: tuple[int, ...]
    label: int
    confidence: float
    pixels: int


def superpixel_table(superpixels: np.ndarray, uncertainty: np.ndarray, predicted: np.ndarray,
                     n_classes: int) -> SuperpixelTable:
    """Mean uncertainty, dominant predicted class and size of every superpixel.

    Parameters
    ----------
    superpixels : numpy.ndarray
        Integer ``H x W`` ids ``0..n-1``.
    uncertainty : numpy.ndarray
        Float ``H x W``.
    predicted : numpy.ndarray
        Integer ``H x W`` classes in ``[0, n_classes)``.
    n_classes : int
        Number of classes.
    """
    if not (superpixels.shape == uncertainty.shape == predicted.shape):
        raise ValueError(f"superpixels, uncertainty and predicted must have one shape, got "
                         f"{superpixels.shape}, {uncertainty.shape} and {predicted.shape}")
    ids = superpixels.ravel().astype(np.intp)
    n = int(ids.max()) + 1
    size = np.bincount(ids, minlength=n)
    sums = np.bincount(ids, weights=uncertainty.ravel().astype(np.float64), minlength=n)
    mean = np.divide(sums, size, out=np.zeros(n), where=size > 0)
    counts = np.bincount(ids * n_classes + predicted.ravel().astype(np.intp),
                         minlength=n * n_classes).reshape(n, n_classes)
    return SuperpixelTable(mean, counts.argmax(axis=1).astype(np.int64), size.astype(np.int64))


def adjacent_pairs(superpixels: np.ndarray) -> np.ndarray:
    """``int64 m x 2`` unique pairs ``(a, b)``, ``a < b``, of 4-connected touching superpixels."""
    pairs = []
    for a, b in ((superpixels[:, 1:], superpixels[:, :-1]), (superpixels[1:], superpixels[:-1])):
        touching = a != b
        pairs.append(np.stack([a[touching], b[touching]], axis=1))
    both = np.sort(np.concatenate(pairs).astype(np.int64), axis=1)
    return np.unique(both, axis=0) if both.size else both.reshape(0, 2)


def smooth_labels(table: SuperpixelTable, pairs: np.ndarray, rounds: int) -> SuperpixelTable:
    """The table with its predicted classes smoothed over the superpixel graph.

    Each round, a superpixel takes the class that at least half of its neighbours' pixels carry
    when that class differs from its own (a majority filter, a cheap Potts prior). A young model
    predicts ragged fragments in the areas it is unsure about; the fragments are mostly wrong
    and would each become a small region to relabel. Uncertainty and sizes are unchanged.
    """
    label = table.label.copy()
    n = len(table)
    if rounds < 1 or pairs.size == 0:
        return table
    classes = int(label.max()) + 1
    for _ in range(rounds):
        votes = np.zeros((n, classes))
        np.add.at(votes, (pairs[:, 0], label[pairs[:, 1]]), table.size[pairs[:, 1]])
        np.add.at(votes, (pairs[:, 1], label[pairs[:, 0]]), table.size[pairs[:, 0]])
        best = votes.argmax(axis=1)
        top = votes.max(axis=1)
        share = top / np.maximum(votes.sum(axis=1), 1)
        own = votes[np.arange(n), label]  # a tie with the own class keeps it (whatever the order)
        label = np.where((top > own) & (share >= 0.5), best, label)
    return SuperpixelTable(table.uncertainty, label, table.size)


#: How queried superpixels become regions.
GROUPINGS = ("superpixel", "connected", "class")


def build_regions(table: SuperpixelTable, ids: np.ndarray, grouping: str = "connected",
                  pairs: np.ndarray | None = None) -> list[Region]:
    """The regions of the queried superpixels ``ids``, least confident first.

    Parameters
    ----------
    table : SuperpixelTable
        The image's superpixel summaries.
    ids : array_like of int
        Queried superpixel ids (repeats and empty superpixels are dropped).
    grouping : {"superpixel", "connected", "class"}
        One region per superpixel; per connected group of queried superpixels with one
        predicted class (``pairs`` needed); or per predicted class (a region may have several
        parts: the fewest regions, which Label Studio draws fastest). One of
        :data:`GROUPINGS`, checked where a policy is made (:class:`~.active.QueryPolicy`).
    pairs : numpy.ndarray, optional
        :func:`adjacent_pairs` of the image's superpixel map.
    """
    ids = np.unique(np.asarray(ids, dtype=np.int64))
    ids = ids[table.size[ids] > 0]
    if ids.size == 0:
        return []
    if grouping == "class":
        root = table.label[ids]
    elif grouping == "connected":
        if pairs is None:
            raise ValueError("grouping='connected' needs the superpixels' adjacent pairs")
        queried = np.zeros(len(table), dtype=bool)
        queried[ids] = True
        same = (queried[pairs[:, 0]] & queried[pairs[:, 1]]
                & (table.label[pairs[:, 0]] == table.label[pairs[:, 1]]))
        joined = pairs[same]
        graph = coo_matrix((np.ones(len(joined)), (joined[:, 0], joined[:, 1])),
                           shape=(len(table), len(table)))
        root = connected_components(graph, directed=False)[1][ids]
    else:
        root = ids
    regions = []
    for group in np.unique(root):
        members = ids[root == group]
        size = table.size[members]
        uncertainty = float(np.average(table.uncertainty[members], weights=size))
        regions.append(Region(tuple(int(i) for i in members), int(table.label[members[0]]),
                              min(max(1.0 - uncertainty, 0.0), 1.0), int(size.sum())))
    regions.sort(key=lambda r: (r.confidence, r.superpixels[0]))
    return regions


def region_map(superpixels: np.ndarray, regions: list[Region]) -> np.ndarray:
    """``int32 H x W``: the index of each pixel's region in ``regions``, ``-1`` outside."""
    lookup = np.full(int(superpixels.max()) + 1, -1, dtype=np.int32)
    for index, region in enumerate(regions):
        lookup[list(region.superpixels)] = index
    return lookup[superpixels]


def dominant_classes(index: np.ndarray, labels: np.ndarray, n_regions: int,
                     n_classes: int) -> np.ndarray:
    """Each region's most frequent labeled class (the lowest on a tie), ``-1`` where none of its
    pixels is labeled: how a person's answer judges a region's pre-label, in the backend and in
    the simulated annotator alike.

    ``index`` is a :func:`region_map` (``-1`` outside every region) and ``labels`` a label map of
    the same shape (``IGNORE_INDEX``, or any value ``>= n_classes``, counts as unlabeled).
    """
    valid = (index >= 0) & (labels < n_classes) & (labels != IGNORE_INDEX)
    joint = index[valid].astype(np.int64) * n_classes + labels[valid]
    counts = np.bincount(joint, minlength=n_regions * n_classes).reshape(n_regions, n_classes)
    return np.where(counts.any(axis=1), counts.argmax(axis=1), -1)
