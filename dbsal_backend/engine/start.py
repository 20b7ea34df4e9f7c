"""A start without a model: the superpixels asked before any model exists (pure functions).

With no model there is no uncertainty to choose by and no guess to show, so each start region
is one superpixel with no pre-label (``label`` is ``n_classes``: no class), answered with its
class. :func:`colour_regions`, the superpixels most different in colour, asks a rare colour (a
weed on soil, a sign on a wall) before any model; :func:`random_regions` is what it was
measured against. The backend's seed tasks (``DBSAL_START=regions``) and the simulator's
``region_start``/``colour_start`` call :func:`start_regions`.
"""

from __future__ import annotations

import numpy as np

from .regions import Region
from .selection import farthest_first
from .superpixels import mean_colours

__all__ = ["START_PICKS", "colour_regions", "random_regions", "start_regions"]

#: How a start of regions picks each image's superpixels.
START_PICKS = ("random", "colour")


def random_regions(superpixels: np.ndarray, k: int, rng: np.random.Generator,
                   label: int) -> list[Region]:
    """``k`` random superpixels of an image (all of them if it has fewer), one region each,
    pre-labeled ``label`` (a start's: no model to guess with)."""
    ids, sizes = np.unique(superpixels, return_counts=True)
    chosen = np.sort(rng.choice(ids.size, size=min(k, ids.size), replace=False))
    return [Region((int(ids[i]),), label, 0.0, int(sizes[i])) for i in chosen]


def colour_regions(image: np.ndarray, superpixels: np.ndarray, k: int,
                   rng: np.random.Generator, label: int) -> list[Region]:
    """``k`` superpixels of an image that differ most in colour (all if it has fewer), one
    region each, pre-labeled ``label``: farthest-first on their mean CIELAB colour from a random
    one (no model needed; an image of few colours is made up with random ones)."""
    colours = mean_colours(image, superpixels)
    sizes = np.bincount(superpixels.ravel(), minlength=len(colours))
    chosen = farthest_first(colours, k, first=int(rng.integers(len(colours))))
    if len(chosen) < min(k, len(colours)):
        rest = np.setdiff1d(np.arange(len(colours)), chosen)
        chosen += rng.choice(rest, size=min(k, len(colours)) - len(chosen), replace=False).tolist()
    return [Region((int(i),), label, 0.0, int(sizes[i])) for i in sorted(chosen)]


def start_regions(pick: str, image: np.ndarray, superpixels: np.ndarray, k: int,
                  rng: np.random.Generator, label: int) -> list[Region]:
    """A start's ``k`` regions of an image, picked as ``pick`` says (one of
    :data:`START_PICKS`): :func:`random_regions` or :func:`colour_regions`."""
    if pick == "colour":
        return colour_regions(image, superpixels, k, rng, label)
    if pick == "random":
        return random_regions(superpixels, k, rng, label)
    raise ValueError(f"pick must be one of {START_PICKS}, got {pick!r}")
