"""Queries as Label Studio predictions (pure functions on arrays).

A queried image becomes one prediction: its regions, least confident first, each pre-labeled
with the model's class and scored with the model's confidence in it; the prediction's score is
the model's confidence in the whole image. Label Studio prints both scores as percentages, and
its "Uncertainty sampling" serves the task with the lowest score first. Class ``i`` of the model
is ``config.labels[i]``.

A region is a ``brushlabels`` result (a mask), or, when the config has a ``PolygonLabels`` tag,
a ``polygonlabels`` result per part: its outline simplified by Douglas-Peucker to
:data:`POLYGON_TOLERANCE` of the image's longer side. Label Studio draws a brush region on two
canvases the size of the displayed image, about 0.3 s each on two cores, and a polygon almost
for free (``bench/results/ui_render_regions*.json``). A region with a hole stays a brush mask: a
polygon would cover the hole.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from scipy.ndimage import find_objects

from .active import Query
from .label_config import LabelConfig
from .regions import region_map
from .rle import regions_to_rle

__all__ = ["POLYGON_TOLERANCE", "empty_prediction", "query_prediction"]

#: Douglas-Peucker tolerance of region outlines, as a share of the image's longer side.
POLYGON_TOLERANCE = 0.0025


def empty_prediction(model_version: str, confidence: float) -> dict[str, Any]:
    """A prediction without regions (a seed task, or nothing to ask): only a task score."""
    score = float(confidence) if confidence == confidence else 0.0  # NaN: no confidence
    return {"result": [], "score": min(max(score, 0.0), 1.0), "model_version": model_version}


def query_prediction(query: Query, config: LabelConfig, model_version: str) -> dict[str, Any]:
    """The prediction for one queried image (its size is the decoded image's, after EXIF
    rotation). When the superpixels were computed at a smaller size (a very large image),
    polygons are traced on that map (their points are shares of the image, so they need no
    scaling) and only brush masks are scaled (nearest neighbour) to the image's size.
    """
    height, width = query.size
    index = region_map(query.superpixels, query.regions)
    outlines: dict[int, list[list[list[float]]]] = {}
    if config.polygon_name is not None:
        outlines = _outlines(index, len(query.regions), POLYGON_TOLERANCE * max(index.shape))
    masks = [k for k in range(len(query.regions)) if k not in outlines]
    rles = regions_to_rle(_at_size(index, height, width), ids=masks) if masks else {}
    common = {"to_name": config.image_name, "original_width": width,
              "original_height": height, "image_rotation": 0}
    result = []
    for k, region in enumerate(query.regions):
        label, score = config.labels[region.label], round(float(region.confidence), 4)
        if k in outlines:
            parts = outlines[k]
            for j, points in enumerate(parts):
                result.append({
                    "id": f"r{k}" if len(parts) == 1 else f"r{k}.{j}",
                    "from_name": config.polygon_name, "type": "polygonlabels", **common,
                    "value": {"points": points, "closed": True, "polygonlabels": [label]},
                    "score": score})
        else:
            result.append({
                "id": f"r{k}", "from_name": config.brush_name, "type": "brushlabels", **common,
                "value": {"format": "rle", "rle": rles[k], "brushlabels": [label]},
                "score": score})
    return {"result": result, "score": round(float(1.0 - query.score), 4),
            "model_version": model_version}


def _at_size(index: np.ndarray, height: int, width: int) -> np.ndarray:
    """The region map at the image's size: a nearest-neighbour scaling in the smallest integer
    type that holds the regions (a 9000 x 9000 image: 81 M pixels)."""
    if index.shape == (height, width):
        return index
    small = index.astype(np.int16) if index.max() < 2**15 else index
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST)


def _outlines(index: np.ndarray, n: int, tolerance: float) -> dict[int, list[list[list[float]]]]:
    """Simplified outlines (points in percent) of the regions that are polygons without holes:
    ``{region: [part, ...]}``; regions with a hole or a degenerate part are left out."""
    height, width = index.shape
    out = {}
    for k, window in enumerate(find_objects(index + 1, n)):
        if window is None:
            continue
        top, left = window[0].start, window[1].start
        mask = np.pad((index[window] == k).astype(np.uint8), 1)
        contours, hierarchy = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
        if hierarchy is None or (hierarchy[0][:, 3] >= 0).any():
            continue  # a hole: keep the region a mask
        parts = []
        for contour in contours:
            simple = cv2.approxPolyDP(contour, tolerance, closed=True).reshape(-1, 2)
            if len(simple) < 3:
                simple = contour.reshape(-1, 2)
            if len(simple) < 3:
                parts = []
                break
            xy = simple.astype(np.float64) + [left - 1, top - 1]
            parts.append([[round(100 * (x + 0.5) / width, 3), round(100 * (y + 0.5) / height, 3)]
                          for x, y in xy])
        if parts:
            out[k] = parts
    return out
