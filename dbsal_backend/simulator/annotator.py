"""A simulated annotator who does in Label Studio what a person does, and counts the clicks.

The cost model (after Cai et al., CVPR 2021, who price polygon annotation by its vertices):

- **A whole image** (seed set, random-images baseline) is drawn as polygons, one per connected
  part of each class (parts drawn later lie on top, so a hole is the part inside it). A part
  costs the vertices of its outline after Douglas-Peucker simplification
  (``cv2.approxPolyDP`` with ``tolerance`` pixels at the image's full size) plus one click to
  pick its class. Parts smaller than ``min_part`` of the image's pixels (0.1%: 173 px, a 13x13
  patch, in a 360x480 image) are not drawn: the surrounding polygon covers them (they still
  count as labeled, exactly, which favours whole images).
- **A pre-labeled region** is checked: a right pre-label (the region's most frequent true class)
  is kept for free; a wrong one is relabeled with ``relabel_clicks`` (select the region, click
  the label). Where the region also holds other classes, each part of them of at least
  ``min_part`` of the image is repainted as a polygon, priced as above and labeled exactly;
  smaller parts keep the region's label (the label noise a person leaves). With dominant-class
  answers (Cai et al.: ``repaint=False``) nothing is repainted: the whole region takes its
  dominant class, whatever else it holds.
- Void pixels (the data set's unlabelled class) stay unlabeled and cost nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.ndimage import find_objects

from ..engine.constants import IGNORE_INDEX
from ..engine.regions import Region, dominant_classes, region_map

__all__ = ["Answer", "ClickModel", "SimulatedAnnotator", "cai_clicks", "polygon_clicks"]


@dataclass(frozen=True)
class ClickModel:
    """Prices of the annotator's actions (see the module docstring)."""

    tolerance: float = 2.0
    min_part: float = 0.001
    relabel_clicks: int = 2
    label_click: int = 1

    def __post_init__(self) -> None:
        if not self.tolerance >= 0:
            raise ValueError(f"tolerance must be >= 0, got {self.tolerance!r}")
        if not 0 <= self.min_part < 1:
            raise ValueError(f"min_part must be in [0, 1), got {self.min_part!r}")
        for name in ("relabel_clicks", "label_click"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")


@dataclass
class Answer:
    """What the annotator gave for one image, and what it cost.

    Attributes
    ----------
    labels : numpy.ndarray
        ``uint8 H x W``, the labels given; ``IGNORE_INDEX`` where nothing was labeled.
    regions : int
        Regions reviewed (0 for a whole image).
    corrections : int
        Regions whose pre-label was wrong.
    clicks : int
        Clicks spent.
    pixels : int
        Pixels labeled.
    prelabels_right, prelabels_judged : int
        Reviewed regions whose pre-label was the true dominant class, and reviewed regions that
        had any labeled (non-void) pixel.
    """

    labels: np.ndarray
    regions: int = 0
    corrections: int = 0
    clicks: int = 0
    pixels: int = 0
    prelabels_right: int = 0
    prelabels_judged: int = 0


def cai_clicks(clicks: int, regions: int, corrections: int, model: ClickModel) -> int:
    """The same answers priced by Cai et al.'s convention (CVPR 2021): one click per region
    asked, right pre-label or not, instead of 0 for a kept pre-label and
    ``model.relabel_clicks`` for a wrong one; polygons (whole images, repainted parts) cost
    what they cost here. Exact for any :class:`Answer` or cumulative tally of them."""
    return int(clicks - model.relabel_clicks * corrections + model.label_click * regions)


def polygon_clicks(mask: np.ndarray, model: ClickModel,
                   image_pixels: int | None = None) -> tuple[int, np.ndarray]:
    """Clicks to draw ``mask`` as polygons, and the parts drawn (a bool mask).

    Each 8-connected part of at least ``model.min_part`` of ``image_pixels`` (default: the
    mask's size) costs its simplified outline's vertices (at least 3) plus
    ``model.label_click``.
    """
    min_area = max(1, int(round(model.min_part * (image_pixels or mask.size))))
    n, parts, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    big = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] >= min_area)
    big = big[big > 0]
    drawn = np.isin(parts, big)
    if big.size == 0:
        return 0, drawn
    contours, _ = cv2.findContours(drawn.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_NONE)
    clicks = 0
    for contour in contours:
        if cv2.contourArea(contour) == 0 and len(contour) < min_area:
            continue  # a hairline: no polygon a person would draw
        vertices = len(cv2.approxPolyDP(contour, model.tolerance, closed=True))
        clicks += max(vertices, 3) + model.label_click
    return clicks, drawn


class SimulatedAnnotator:
    """Answers queries from ground truth and prices them with a :class:`ClickModel`.

    Parameters
    ----------
    n_classes : int
        Classes of the label maps (``IGNORE_INDEX`` marks void).
    clicks : ClickModel
        Prices.
    """

    def __init__(self, n_classes: int, clicks: ClickModel = ClickModel()) -> None:
        self.n_classes = n_classes
        self.clicks = clicks

    def whole_image(self, truth: np.ndarray) -> Answer:
        """Label every pixel: the truth, for its polygons' clicks."""
        labels = truth.astype(np.uint8, copy=True)
        clicks = sum(polygon_clicks(truth == c, self.clicks)[0]
                     for c in np.unique(truth) if c != IGNORE_INDEX)
        return Answer(labels, clicks=int(clicks), pixels=int((truth != IGNORE_INDEX).sum()))

    def review(self, truth: np.ndarray, superpixels: np.ndarray,
               regions: Sequence[Region], repaint: bool = True) -> Answer:
        """Check each pre-labeled region: keep or relabel it and, with ``repaint``, repaint
        the parts of other classes (without: the region's dominant class everywhere in it)."""
        labels = np.full(truth.shape, IGNORE_INDEX, dtype=np.uint8)
        answer = Answer(labels, regions=len(regions))
        index = region_map(superpixels, list(regions))
        if index.shape != truth.shape:  # superpixels of a very large image, at a smaller size
            index = cv2.resize(index, truth.shape[::-1], interpolation=cv2.INTER_NEAREST)
        dominants = dominant_classes(index, truth, len(regions), self.n_classes)
        for k, (region, window) in enumerate(zip(regions, find_objects(index + 1, len(regions)))):
            dominant = int(dominants[k])
            if window is None or dominant < 0:
                continue
            inside = index[window] == k
            true = truth[window]
            valid = inside & (true != IGNORE_INDEX)
            answer.prelabels_judged += 1
            if region.label == dominant:
                answer.prelabels_right += 1
            else:
                answer.corrections += 1
                answer.clicks += self.clicks.relabel_clicks
            given = labels[window]
            given[valid] = dominant
            for c in (np.unique(true[valid]) if repaint else ()):
                if c == dominant:
                    continue
                cost, drawn = polygon_clicks(valid & (true == c), self.clicks, truth.size)
                given[drawn] = c
                answer.clicks += cost
            answer.pixels += int(valid.sum())
        return answer
