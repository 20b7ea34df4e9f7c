"""Label Studio annotations to label maps (pure functions on JSON-like dicts).

A segmentation annotation's ``result`` is a list of regions, each with one label name:
``brushlabels`` results (an RLE of the whole canvas, see ``shared/docs/label-studio-notes.md``)
when the config has a ``BrushLabels`` tag, ``polygonlabels`` results (points in percent of the
image's width and height) when it has a ``PolygonLabels`` tag. :func:`annotation_to_label_map`
paints them, in order (Label Studio draws a later region over an earlier one), into a ``uint8``
label map that is ``IGNORE_INDEX`` wherever nothing covers; :func:`select_annotations` picks the
annotation to train on for each task; :func:`label_map_to_results` goes the other way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

import numpy as np

from ..engine.checks import is_int
from ..engine.constants import IGNORE_INDEX
from .label_config import LabelConfig
from .polygons import mask_outlines, polygon_to_mask
from .rle import mask_to_rle, rle_to_mask

__all__ = ["AnnotationError", "annotation_to_label_map", "label_map_to_results",
           "select_annotations"]

_OLDEST = datetime.min.replace(tzinfo=timezone.utc)


class AnnotationError(ValueError):
    """An annotation cannot be turned into a label map (the caller skips it)."""


def _check_class_index(class_index: Mapping[str, int]) -> None:
    if not isinstance(class_index, Mapping):
        raise TypeError(
            f"class_index must be a mapping label -> int, got {type(class_index).__name__}"
        )
    for name, index in class_index.items():
        if not is_int(index):
            raise TypeError(f"class_index[{name!r}] must be an int, got {type(index).__name__}")
        if not 0 <= index < IGNORE_INDEX:
            raise ValueError(f"class_index[{name!r}] must be in [0, {IGNORE_INDEX}), got {index}")


def annotation_to_label_map(
    results: list[dict[str, Any]],
    config: LabelConfig,
    height: int,
    width: int,
    class_index: Mapping[str, int],
) -> tuple[np.ndarray, list[str]]:
    """Paint the brush and polygon results of one annotation into a label map.

    Results of another type, or whose ``from_name``/``to_name`` are not the config's brush or
    polygon tag and image, are ignored. Results are painted in list order, so where regions
    overlap the later result (the one Label Studio draws on top) wins. A result without a label
    (a region nobody gave a class) is skipped; one whose label is not in the config, has no class
    index, or that has several labels is skipped with a warning.

    Parameters
    ----------
    results : list of dict
        The annotation's ``result`` list.
    config : LabelConfig
        The project's parsed label config.
    height, width : int
        Size of the image as the backend loaded it (after EXIF rotation).
    class_index : mapping of str to int
        Label name to class index in ``[0, IGNORE_INDEX)``, e.g. ``config.class_index``.

    Returns
    -------
    label_map : numpy.ndarray
        ``uint8`` ``height x width``; ``IGNORE_INDEX`` where no brush covers.
    warnings : list of str
        One message per skipped result.

    Raises
    ------
    AnnotationError
        If ``results`` is not a list, a brush result is not a dict or has no RLE, its RLE is
        malformed, or its ``original_width``/``original_height`` differ from the image size.
    TypeError, ValueError
        If ``config``, ``height``, ``width`` or ``class_index`` are of the wrong type or range.
    """
    if not isinstance(config, LabelConfig):
        raise TypeError(f"config must be a LabelConfig, got {type(config).__name__}")
    for name, value in (("height", height), ("width", width)):
        if not is_int(value) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    _check_class_index(class_index)
    if not isinstance(results, list):
        raise AnnotationError(f"annotation result must be a list, got {type(results).__name__}")

    label_map = np.full((height, width), IGNORE_INDEX, dtype=np.uint8)
    known = config.class_index
    warnings: list[str] = []
    for k, result in enumerate(results):
        if not isinstance(result, dict):
            raise AnnotationError(f"result {k} is a {type(result).__name__}, not a dict")
        kind = str(result.get("type", "")).lower()
        if result.get("to_name") != config.image_name or not (
                (kind == "brushlabels" and config.brush_name is not None
                 and result.get("from_name") == config.brush_name)
                or (kind == "polygonlabels" and config.polygon_name is not None
                    and result.get("from_name") == config.polygon_name)):
            continue
        where = f"result {k} (id {result.get('id')!r})"
        value = result.get("value")
        needed = "rle" if kind == "brushlabels" else "points"
        if not isinstance(value, dict) or needed not in value:
            raise AnnotationError(f"{where} has no value.{needed} (format {value!r:.60})")
        labels = value.get(kind)
        if labels is None or labels == []:
            continue  # a region nobody gave a class (a start's, left unanswered)
        if not isinstance(labels, list) or len(labels) != 1:
            warnings.append(f"{where} skipped: expected one label in {kind}, got {labels!r}")
            continue
        label = labels[0]
        if not isinstance(label, str) or label not in known:
            warnings.append(f"{where} skipped: label {label!r} is not in the label config")
            continue
        if label not in class_index:
            warnings.append(f"{where} skipped: label {label!r} has no class index")
            continue
        size = (result.get("original_width", width), result.get("original_height", height))
        if size != (width, height):
            raise AnnotationError(
                f"{where} is for a {size[0]}x{size[1]} image (width x height), "
                f"but the image is {width}x{height}"
            )
        try:
            if kind == "brushlabels":
                mask = rle_to_mask(value["rle"], height, width)
            else:
                mask = polygon_to_mask(value["points"], height, width)
        except (TypeError, ValueError) as exc:
            what = "RLE" if kind == "brushlabels" else "polygon"
            raise AnnotationError(f"{where} has a malformed {what}: {exc}") from None
        label_map[mask] = class_index[label]
    return label_map, warnings


def _timestamp(value: Any) -> datetime:
    if not isinstance(value, str):
        return _OLDEST
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError:
        return _OLDEST
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)


def _newest_key(annotation: dict[str, Any]) -> tuple[datetime, int]:
    stamp = _timestamp(annotation.get("updated_at"))
    if stamp == _OLDEST:
        stamp = _timestamp(annotation.get("created_at"))
    ident = annotation.get("id")
    return stamp, ident if is_int(ident) else -1


def select_annotations(
    task_annotations: Mapping[Any, Iterable[dict[str, Any]]],
) -> dict[Any, dict[str, Any]]:
    """Pick the newest non-cancelled annotation of each task.

    Newest means the latest ``updated_at`` (``created_at`` when it is missing or unparsable),
    then the highest ``id``. Annotations with ``was_cancelled`` true (skipped tasks) and
    entries that are not dicts are left out; tasks left with none are absent from the result.

    Parameters
    ----------
    task_annotations : mapping
        ``{task_id: [annotation dict, ...]}`` as Label Studio returns them.

    Returns
    -------
    dict
        ``{task_id: annotation}``.
    """
    if not isinstance(task_annotations, Mapping):
        raise TypeError(
            f"task_annotations must be a mapping task id -> annotations, "
            f"got {type(task_annotations).__name__}"
        )
    chosen: dict[Any, dict[str, Any]] = {}
    for task_id, annotations in task_annotations.items():
        valid = [
            a for a in (annotations or ()) if isinstance(a, dict) and not a.get("was_cancelled")
        ]
        if valid:
            chosen[task_id] = max(valid, key=_newest_key)
    return chosen


def label_map_to_results(
    label_map: np.ndarray, config: LabelConfig, only: np.ndarray | None = None
) -> list[dict[str, Any]]:
    """Results painting a label map, one region per class present (brush masks when the config
    has a brush, else one polygon per connected part, holes joined by slits; the inverse of
    :func:`annotation_to_label_map`). ``IGNORE_INDEX`` pixels, and pixels outside the boolean
    mask ``only`` when given, are left unpainted."""
    labels = np.asarray(label_map)
    if labels.ndim != 2:
        raise ValueError(f"label_map must be H x W, got shape {labels.shape}")
    if only is not None and np.shape(only) != labels.shape:
        raise ValueError(f"only must have the label map's shape {labels.shape}")
    height, width = labels.shape
    common = {"to_name": config.image_name, "original_width": width, "original_height": height,
              "image_rotation": 0}
    results = []
    for k, name in enumerate(config.labels):
        mask = labels == k
        if only is not None:
            mask &= np.asarray(only, dtype=bool)
        if not mask.any():
            continue
        if config.brush_name is not None:
            results.append({"from_name": config.brush_name, "type": "brushlabels", **common,
                            "value": {"format": "rle", "rle": mask_to_rle(mask),
                                      "brushlabels": [name]}})
        else:
            results.extend({"from_name": config.polygon_name, "type": "polygonlabels", **common,
                            "value": {"points": points, "closed": True, "polygonlabels": [name]}}
                           for points in mask_outlines(mask, 0, "slit"))
    return results
