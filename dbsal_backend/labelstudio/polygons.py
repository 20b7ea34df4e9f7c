"""Masks and Label Studio polygons, both ways (pure functions on arrays).

A Label Studio polygon is a list of ``[x, y]`` points in percent of the image's width and
height. :func:`mask_outlines` traces a mask's connected parts as such polygons (simplified by
Douglas-Peucker), :func:`polygon_to_mask` rasterizes one back. A point stands for a pixel's
centre, so a traced outline runs through the part's border pixels and rasterizes back to them.

A polygon cannot have a hole. ``holes="skip"`` leaves a part with a hole out (the caller draws it
another way, e.g. as a brush mask); ``holes="slit"`` joins each hole to the outline by a
zero-width slit (the outline runs to the hole, around it the other way, and back), so one
polygon covers the part without its hole, as Label Studio draws it and as
:func:`polygon_to_mask` fills it (the slit itself is a line one pixel wide).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

__all__ = ["mask_outlines", "polygon_to_mask"]

Points = list[list[float]]


def polygon_to_mask(points: Any, height: int, width: int) -> np.ndarray:
    """The pixels inside a Label Studio polygon (``[[x%, y%], ...]`` of the image's width and
    height), as a bool ``height x width`` mask. Raises ``ValueError`` for fewer than 3 finite
    points."""
    xy = np.asarray(points, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2 or len(xy) < 3 or not np.isfinite(xy).all():
        raise ValueError(f"expected at least 3 finite [x, y] points, got shape {xy.shape}")
    # continuous coordinates (pixel i spans [i, i + 1)) to pixel centres, 4 fractional bits
    centres = xy / 100.0 * np.array([width, height]) - 0.5
    limit = 2 * max(width, height)
    fixed = np.round(np.clip(centres, -limit, limit) * 16).astype(np.int32)
    mask = np.zeros((height, width), np.uint8)
    cv2.fillPoly(mask, [fixed.reshape(-1, 1, 2)], 1, shift=4)
    return mask.astype(bool)


def mask_outlines(mask: np.ndarray, tolerance: float, holes: str = "skip",
                  offset: tuple[int, int] = (0, 0),
                  size: tuple[int, int] | None = None) -> list[Points] | None:
    """The outlines of a mask's connected parts as Label Studio polygons.

    Parameters
    ----------
    mask : numpy.ndarray
        Bool or 0/1 ``H x W``: the pixels to outline (a window of a larger image when
        ``offset`` and ``size`` say so).
    tolerance : float
        Douglas-Peucker tolerance in pixels (0 keeps every corner).
    holes : {"skip", "slit"}
        What a part with a hole becomes: None for the whole mask (``"skip"``), or one polygon
        with a slit to each hole (``"slit"``).
    offset : (top, left)
        Where the mask's window starts in the image.
    size : (height, width), optional
        The image's size (the mask's own when omitted): points are percent of it.

    Returns
    -------
    list of polygons, or None
        One polygon per connected part (empty for an empty mask); None when ``holes="skip"``
        and a part has a hole.
    """
    if holes not in ("skip", "slit"):
        raise ValueError(f'holes must be "skip" or "slit", got {holes!r}')
    height, width = size if size is not None else mask.shape
    padded = np.pad(np.asarray(mask, dtype=np.uint8), 1)
    contours, hierarchy = cv2.findContours(padded, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:
        return []
    parents = hierarchy[0][:, 3]
    if holes == "skip" and (parents >= 0).any():
        return None
    top, left = offset
    shift = np.array([left - 1, top - 1], dtype=np.float64)  # undo the padding
    out = []
    for k, contour in enumerate(contours):
        if parents[k] >= 0:
            continue
        ring = _simplified(contour, tolerance)
        for child in np.flatnonzero(parents == k):
            ring = _slit(ring, _simplified(contours[child], tolerance))
        xy = ring + shift
        out.append([[round(100 * (x + 0.5) / width, 3), round(100 * (y + 0.5) / height, 3)]
                    for x, y in xy])
    return out


def _simplified(contour: np.ndarray, tolerance: float) -> np.ndarray:
    """A contour simplified, as float ``N x 2`` with at least 3 points (a part of one or two
    pixels becomes the square around them)."""
    simple = cv2.approxPolyDP(contour, tolerance, closed=True).reshape(-1, 2)
    if len(simple) < 3:
        simple = contour.reshape(-1, 2)
    if len(simple) < 3:
        (x0, y0), (x1, y1) = simple.min(axis=0) - 0.5, simple.max(axis=0) + 0.5
        return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)
    return simple.astype(np.float64)


def _slit(ring: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """``ring`` with ``hole`` spliced in at their closest points: along the ring to the slit,
    once around the hole the other way round (so the hole stays empty under the nonzero and
    the even-odd fill rules alike), back along the slit."""
    if _signed_area(hole) * _signed_area(ring) > 0:
        hole = hole[::-1]
    distances = ((ring[:, None, :] - hole[None, :, :]) ** 2).sum(axis=2)
    i, j = np.unravel_index(int(distances.argmin()), distances.shape)
    around = np.concatenate([hole[j:], hole[:j + 1]])
    return np.concatenate([ring[:i + 1], around, ring[i:]])


def _signed_area(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return float((x * np.roll(y, -1) - np.roll(x, -1) * y).sum()) / 2
