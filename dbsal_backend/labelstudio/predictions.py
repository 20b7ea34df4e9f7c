"""Queries as Label Studio predictions (pure functions on arrays).

A queried image becomes one prediction: its regions, least confident first, each pre-labeled
with the model's class and scored with the model's confidence in it; the prediction's score is
the model's confidence in the whole image. Label Studio prints both scores as percentages, and
its "Uncertainty sampling" serves the task with the lowest score first. Class ``i`` of the model
is ``config.labels[i]``; a region labeled ``len(config.labels)`` has no class (a start's, asked
before any model: :mod:`~dbsal_backend.engine.start`) and is shown without a label or a score,
for a person to give it one (Label Studio 1.23 draws it gray, lists it without a label, and stores
it unlabeled if nobody does: the annotation reader skips it).

A region is a ``brushlabels`` result (a mask), or, when the config has a ``PolygonLabels`` tag,
a ``polygonlabels`` result per part: its outline simplified by Douglas-Peucker to
:data:`POLYGON_TOLERANCE` of the image's longer side. Label Studio draws a brush region on two
canvases the size of the displayed image, about 0.3 s each on two cores, and a polygon almost
for free (``bench/results/ui_render_regions*.json``). A region with a hole stays a brush mask when
the config has a brush (a polygon would cover the hole); in a polygon-only config it is one
polygon with a slit to each hole (:mod:`.polygons`).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from scipy.ndimage import find_objects

from ..engine.active import Query
from .label_config import LabelConfig
from .polygons import mask_outlines
from ..engine.regions import region_map
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
        outlines = _outlines(index, len(query.regions), POLYGON_TOLERANCE * max(index.shape),
                             holes="skip" if config.brush_name else "slit")
    masks = [k for k in range(len(query.regions)) if k not in outlines] \
        if config.brush_name is not None else []
    rles = regions_to_rle(_at_size(index, height, width), ids=masks) if masks else {}
    common = {"to_name": config.image_name, "original_width": width,
              "original_height": height, "image_rotation": 0}
    result = []
    for k, region in enumerate(query.regions):
        guess = region.label < len(config.labels)
        labels = [config.labels[region.label]] if guess else []
        scored = {"score": round(float(region.confidence), 4)} if guess else {}
        if k in outlines:
            parts = outlines[k]
            for j, points in enumerate(parts):
                result.append({
                    "id": f"r{k}" if len(parts) == 1 else f"r{k}.{j}",
                    "from_name": config.polygon_name, "type": "polygonlabels", **common,
                    "value": {"points": points, "closed": True, "polygonlabels": labels},
                    **scored})
        elif k in rles:
            result.append({
                "id": f"r{k}", "from_name": config.brush_name, "type": "brushlabels", **common,
                "value": {"format": "rle", "rle": rles[k], "brushlabels": labels}, **scored})
    return {"result": result, "score": round(float(1.0 - query.score), 4),
            "model_version": model_version}


def _at_size(index: np.ndarray, height: int, width: int) -> np.ndarray:
    """The region map at the image's size: a nearest-neighbour scaling in the smallest integer
    type that holds the regions (a 9000 x 9000 image: 81 M pixels)."""
    if index.shape == (height, width):
        return index
    small = index.astype(np.int16) if index.max() < 2**15 else index
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST)


def _outlines(index: np.ndarray, n: int, tolerance: float,
              holes: str) -> dict[int, list[list[list[float]]]]:
    """Simplified outlines (points in percent) of the regions: ``{region: [part, ...]}``;
    with ``holes="skip"`` a region with a hole is left out (it stays a brush mask)."""
    out = {}
    for k, window in enumerate(find_objects(index + 1, n)):
        if window is None:
            continue
        parts = mask_outlines(index[window] == k, tolerance, holes,
                              offset=(window[0].start, window[1].start), size=index.shape)
        if parts:
            out[k] = parts
    return out
