"""Queries as Label Studio predictions (pure functions on arrays).

A queried image becomes one prediction: one ``brushlabels`` result per region, least confident
first, pre-labeled with the model's class and scored with the model's confidence in it; the
prediction's score is the model's confidence in the whole image. Label Studio prints both
scores as percentages, and its "Uncertainty sampling" serves the task with the lowest score
first. Class ``i`` of the model is ``config.labels[i]``.
"""

from __future__ import annotations

from typing import Any

import cv2
from .active import Query
from .label_config import LabelConfig
from .regions import region_map
from .rle import regions_to_rle

__all__ = ["empty_prediction", "query_prediction"]


def empty_prediction(model_version: str, confidence: float) -> dict[str, Any]:
    """A prediction without regions (a seed task, or nothing to ask): only a task score."""
    score = float(confidence) if confidence == confidence else 0.0  # NaN: no confidence
    return {"result": [], "score": min(max(score, 0.0), 1.0), "model_version": model_version}


def query_prediction(query: Query, config: LabelConfig, model_version: str) -> dict[str, Any]:
    """The prediction for one queried image (its size is the decoded image's, after EXIF
    rotation). The regions' superpixel map is scaled (nearest neighbour) to the image's size
    when it was computed at a smaller one.
    """
    height, width = query.size
    index = region_map(query.superpixels, query.regions)
    if index.shape != (height, width):
        index = cv2.resize(index, (width, height), interpolation=cv2.INTER_NEAREST)
    rles = regions_to_rle(index, ids=range(len(query.regions)))
    result = [
        {
            "id": f"r{k}",
            "from_name": config.brush_name,
            "to_name": config.image_name,
            "type": "brushlabels",
            "original_width": width,
            "original_height": height,
            "image_rotation": 0,
            "value": {"format": "rle", "rle": rles[k],
                      "brushlabels": [config.labels[region.label]]},
            "score": round(float(region.confidence), 4),
        }
        for k, region in enumerate(query.regions)
    ]
    return {"result": result, "score": round(float(1.0 - query.score), 4),
            "model_version": model_version}
