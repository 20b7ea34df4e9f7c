"""Superpixel queries as Label Studio predictions (pure functions on arrays).

For one image, each high-uncertainty superpixel becomes one ``brushlabels`` result: its mask,
pre-labelled with the model's dominant class inside it and scored with its uncertainty. The
annotator corrects the labels of these regions only; low-uncertainty superpixels are left out.
Class ``i`` of the model is ``config.labels[i]``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from .label_config import LabelConfig
from .rle import regions_to_rle

__all__ = ["dominant_classes", "superpixel_prediction"]


def _int_map(array: Any, name: str) -> np.ndarray:
    x = np.asarray(array)
    if x.ndim != 2 or x.size == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array (H x W), got shape {x.shape}")
    if x.dtype == bool or not np.issubdtype(x.dtype, np.integer):
        raise TypeError(f"{name} must have an integer dtype, got {x.dtype}")
    if x.min() < 0:
        raise ValueError(f"{name} must be >= 0, got {x.min()}")
    return x


def dominant_classes(
    predicted_label_map: np.ndarray, superpixels: np.ndarray, n_classes: int
) -> np.ndarray:
    """Most frequent predicted class in each superpixel.

    Parameters
    ----------
    predicted_label_map : numpy.ndarray
        Predicted class per pixel, ``H x W``, values in ``[0, n_classes)``.
    superpixels : numpy.ndarray
        Superpixel id per pixel, ``H x W``, ids ``0 .. n-1``.
    n_classes : int
        Number of classes.

    Returns
    -------
    numpy.ndarray
        ``int64[n]`` with ``n = superpixels.max() + 1``; ties go to the lower class, and an id
        with no pixels gets class 0.
    """
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)):
        raise TypeError(f"n_classes must be an int, got {type(n_classes).__name__}")
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    predicted = _int_map(predicted_label_map, "predicted_label_map")
    sp = _int_map(superpixels, "superpixels")
    if predicted.shape != sp.shape:
        raise ValueError(
            f"predicted_label_map and superpixels must have the same shape, "
            f"got {predicted.shape} and {sp.shape}"
        )
    if predicted.max() >= n_classes:
        raise ValueError(
            f"predicted_label_map has class {predicted.max()}, not below n_classes={n_classes}"
        )
    n = int(sp.max()) + 1
    flat = sp.ravel().astype(np.int64) * n_classes + predicted.ravel()
    counts = np.bincount(flat, minlength=n * n_classes).reshape(n, n_classes)
    return counts.argmax(axis=1)


def superpixel_prediction(
    superpixels: np.ndarray,
    high_ids: Iterable[int],
    predicted: np.ndarray,
    scores: np.ndarray,
    config: LabelConfig,
    model_version: str,
    task_score: float,
) -> dict[str, Any]:
    """Label Studio prediction for one task: one brush region per high-uncertainty superpixel.

    Parameters
    ----------
    superpixels : numpy.ndarray
        Superpixel id per pixel, ``H x W`` (ids ``0 .. n-1``).
    high_ids : iterable of int
        Ids of the superpixels to query (e.g. ``np.flatnonzero(natural_breaks_split(scores))``).
        Ids with no pixels are left out; repeats count once.
    predicted : numpy.ndarray
        The model's predicted class per pixel, ``H x W``, values in ``[0, len(config.labels))``.
    scores : numpy.ndarray
        Uncertainty of every superpixel (bits), ``float[m]`` with ``m >= n``; written as each
        region's ``score`` (not range-checked by Label Studio).
    config : LabelConfig
        The project's label config (``from_name``, ``to_name``, class names).
    model_version : str
        Written into the prediction (must match the project's model version for the Data
        Manager to sort by its score).
    task_score : float
        The prediction's (task's) score, in ``[0, 1]`` (Label Studio's prediction import drops
        predictions scored outside it). The queue tab sorts by it, highest first.

    Returns
    -------
    dict
        ``{"result": [...], "score": task_score, "model_version": model_version}``; each result
        ``{"id": "sp<id>", "from_name", "to_name", "type": "brushlabels", "original_width",
        "original_height", "image_rotation": 0, "value": {"format": "rle", "rle",
        "brushlabels": [class name]}, "score": superpixel uncertainty}``, in increasing id.
    """
    if not isinstance(config, LabelConfig):
        raise TypeError(f"config must be a LabelConfig, got {type(config).__name__}")
    if not isinstance(model_version, str) or not model_version:
        raise ValueError(f"model_version must be a non-empty str, got {model_version!r}")
    if isinstance(task_score, bool) or not isinstance(task_score, (int, float, np.number)):
        raise TypeError(f"task_score must be a number, got {type(task_score).__name__}")
    if not (math.isfinite(task_score) and 0 <= task_score <= 1):
        raise ValueError(
            f"task_score must be in [0, 1], got {task_score} (Label Studio's import drops "
            "predictions scored outside it; normalise, e.g. by log2(n_classes) bits)"
        )
    sp = _int_map(superpixels, "superpixels")
    classes = dominant_classes(predicted, sp, len(config.labels))
    n = classes.size
    score_array = np.asarray(scores)
    if score_array.ndim != 1 or score_array.size < n:
        raise ValueError(
            f"scores must be 1-D with at least {n} entries, got shape {score_array.shape}"
        )
    if score_array.dtype == bool or not np.issubdtype(score_array.dtype, np.number):
        raise TypeError(f"scores must be numbers, got dtype {score_array.dtype}")
    ids = np.asarray(list(high_ids) if not isinstance(high_ids, np.ndarray) else high_ids)
    if ids.size and (ids.dtype == bool or not np.issubdtype(ids.dtype, np.integer)):
        raise TypeError(
            f"high_ids must be integer superpixel ids, got dtype {ids.dtype} "
            "(for a boolean mask use np.flatnonzero(mask))"
        )
    ids = np.unique(ids.astype(np.int64).ravel())
    if ids.size and (ids[0] < 0 or ids[-1] >= n):
        raise ValueError(f"high_ids must be in [0, {n}), got {ids[0]} .. {ids[-1]}")
    present = np.bincount(sp.ravel(), minlength=n) > 0
    ids = ids[present[ids]]
    if not np.isfinite(score_array[ids]).all():
        raise ValueError("scores of the queried superpixels must be finite")

    height, width = sp.shape
    rles = regions_to_rle(sp, ids=ids.tolist())
    result = [
        {
            "id": f"sp{i}",
            "from_name": config.brush_name,
            "to_name": config.image_name,
            "type": "brushlabels",
            "original_width": width,
            "original_height": height,
            "image_rotation": 0,
            "value": {
                "format": "rle",
                "rle": rles[i],
                "brushlabels": [config.labels[classes[i]]],
            },
            "score": float(score_array[i]),
        }
        for i in ids.tolist()
    ]
    return {"result": result, "score": float(task_score), "model_version": model_version}
