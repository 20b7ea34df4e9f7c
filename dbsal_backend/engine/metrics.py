"""Scoring a segmentation model against full label maps: the confusion matrix, IoU, mIoU.

- :func:`confusion_matrix`, :func:`iou_per_class`, :func:`miou`: pure functions on arrays.
- :func:`evaluate`: a model at the working resolution, scored at the label maps' full size.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .constants import IGNORE_INDEX
from .data import fit_side

__all__ = ["confusion_matrix", "evaluate", "iou_per_class", "miou"]


def confusion_matrix(pred: np.ndarray, target: np.ndarray, n_classes: int,
                     ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Confusion matrix ``n_classes x n_classes`` (rows: truth, columns: prediction).

    Pixels whose target is ``ignore_index`` are skipped.

    Parameters
    ----------
    pred, target : numpy.ndarray
        Integer arrays of the same shape.
    n_classes : int
        Number of classes; values must lie in ``[0, n_classes)`` (``target`` may also hold
        ``ignore_index``).

    Returns
    -------
    numpy.ndarray
        int64 counts.
    """
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {pred.shape} and "
                         f"{target.shape}")
    for name, array in (("pred", pred), ("target", target)):
        if not np.issubdtype(array.dtype, np.integer):
            raise TypeError(f"{name} must be an integer array, got dtype {array.dtype}")
    valid = target != ignore_index
    t, p = target[valid].astype(np.int64), pred[valid].astype(np.int64)
    for name, values in (("pred", p), ("target", t)):
        if values.size and (values.min() < 0 or values.max() >= n_classes):
            raise ValueError(f"{name} values must be in [0, {n_classes}), "
                             f"got {values.min()}..{values.max()}")
    counts = np.bincount(t * n_classes + p, minlength=n_classes * n_classes)
    return counts.reshape(n_classes, n_classes)


def iou_per_class(confusion: np.ndarray) -> np.ndarray:
    """Intersection over union per class from a confusion matrix.

    Returns float64 ``(n_classes,)``; NaN for a class absent from both truth and prediction.
    """
    confusion = np.asarray(confusion)
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
        raise ValueError(f"confusion must be a square matrix, got shape {confusion.shape}")
    intersection = np.diag(confusion).astype(np.float64)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - intersection
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, intersection / union, np.nan)


def miou(confusion: np.ndarray) -> float:
    """Mean IoU over the classes present in truth or prediction (NaN if there are none)."""
    iou = iou_per_class(confusion)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else math.nan


def evaluate(model: nn.Module, images: Sequence[np.ndarray], labels: Sequence[np.ndarray],
             n_classes: int, max_side: int | None = None) -> dict:
    """Score ``model`` against full-size label maps.

    Each image runs at the working resolution (shrunk to ``max_side`` like in training and
    scoring); the logits are resized to the label map's size before the argmax.

    Returns
    -------
    dict
        ``miou`` (float), ``iou`` (float64 per class, NaN where a class is absent from both
        truth and prediction), ``pixel_accuracy`` (over labeled pixels) and ``confusion``.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    try:
        with torch.inference_mode():
            for image, label in zip(images, labels):
                small = fit_side(image, max_side) if max_side else image
                x = torch.from_numpy(np.ascontiguousarray(small)).permute(2, 0, 1)[None]
                logits = model(x.float().div_(255).to(device))
                if logits.shape[-2:] != label.shape:
                    logits = F.interpolate(logits, size=label.shape, mode="bilinear",
                                           align_corners=False)
                pred = logits.argmax(dim=1)[0].cpu().numpy()
                confusion += confusion_matrix(pred, label, n_classes)
    finally:
        model.train(was_training)
    total = confusion.sum()
    return {
        "miou": miou(confusion),
        "iou": iou_per_class(confusion),
        "pixel_accuracy": float(np.trace(confusion) / total) if total else math.nan,
        "confusion": confusion,
    }

