"""Self-labels for fine-tuning: the model's confident pre-labels where nobody labeled.

- :func:`self_labeled`: fill a label map's ``IGNORE_INDEX`` pixels with confident pre-labels,
  above one probability threshold or, class-balanced, each class's most confident share.
- :func:`class_share_top`: which pixels are among the most confident share of their class.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .constants import IGNORE_INDEX
from .devices import pick_device
from .scoring import Scorer

__all__ = ["class_share_top", "self_labeled"]


def self_labeled(model: nn.Module, images: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                 threshold: float | None = None, weights: torch.Tensor | None = None,
                 device: torch.device | str = "cpu", *, share: float | None = None
                 ) -> list[np.ndarray]:
    """``labels`` with their ``IGNORE_INDEX`` pixels filled by the model's confident pre-labels.

    Self-training for fine-tuning: where a person labeled nothing (the superpixels a step did
    not ask about, void), the trained model's pre-label
    (:meth:`~dbsal_backend.engine.scoring.Scorer.prelabel_confidence`, corrected by the loss's class
    ``weights``) becomes a label where its probability is at least ``threshold``, or, with
    ``share`` instead, where it is among the ``share`` most confident of the unlabeled pixels
    with that pre-label over all the images (:func:`class_share_top`). Exactly one of the
    two is given. The given labels are kept as they are. Images and labels are at the
    working resolution. With ``share`` the pre-labels and confidences of the unlabeled
    pixels are held until all images are scored: at most 5 bytes a pixel, about what the
    images and their labels take already.
    """
    if (threshold is None) == (share is None):
        raise ValueError("self_labeled needs exactly one of threshold and share")
    device = pick_device(device) if isinstance(device, str) else device
    side = max(max(image.shape[:2]) for image in images)
    scorer = Scorer(model.to(device), model.n_classes, mc_samples=1, max_side=side,
                    device=device, class_weights=None if weights is None else weights.numpy())
    if threshold is not None:
        out = []
        for image, label in zip(images, labels):
            if (label == IGNORE_INDEX).any():
                guess = scorer.confident_prelabels([image], threshold)[0]
                label = np.where(label == IGNORE_INDEX, guess, label).astype(label.dtype)
            out.append(label)
        return out
    open_ = [np.flatnonzero(label == IGNORE_INDEX) for label in labels]
    guesses = {}  # image index -> (pre-labels, confidence) of its unlabeled pixels
    for i in (i for i, where in enumerate(open_) if where.size):
        predicted, confidence = next(scorer.prelabel_confidence([images[i]]))
        guesses[i] = (predicted.ravel()[open_[i]], confidence.ravel()[open_[i]])
    if not guesses:
        return list(labels)
    keep = class_share_top(np.concatenate([p for p, _ in guesses.values()]),
                           np.concatenate([c for _, c in guesses.values()]),
                           model.n_classes, share)
    out, start = list(labels), 0
    for i, (predicted, _) in guesses.items():
        kept = keep[start:start + predicted.size]
        start += predicted.size
        filled = labels[i].copy()
        filled.ravel()[open_[i][kept]] = predicted[kept]
        out[i] = filled
    return out


def class_share_top(predicted: np.ndarray, confidence: np.ndarray, n_classes: int,
                    share: float) -> np.ndarray:
    """Which pixels are among the ``share`` most confident of their class.

    Parameters
    ----------
    predicted : numpy.ndarray
        Integer classes in ``[0, n_classes)``, any shape.
    confidence : numpy.ndarray
        The probability of each pixel's class, the shape of ``predicted``.
    n_classes : int
        Number of classes.
    share : float
        In ``(0, 1]``: of the ``n_c`` pixels of class ``c``, exactly ``ceil(share * n_c)``
        are chosen, the most confident (ties broken by position).

    Returns
    -------
    numpy.ndarray
        ``bool``, the shape of ``predicted``.
    """
    predicted = np.asarray(predicted)
    confidence = np.asarray(confidence)
    if predicted.shape != confidence.shape:
        raise ValueError(f"predicted and confidence differ in shape: {predicted.shape} "
                         f"!= {confidence.shape}")
    flat = predicted.ravel()
    if flat.size and (flat.min() < 0 or flat.max() >= n_classes):
        raise ValueError(f"predicted classes must be in [0, {n_classes})")
    chosen = np.zeros(flat.size, dtype=bool)
    order = np.argsort(flat, kind="stable")
    bounds = np.searchsorted(flat[order], np.arange(n_classes + 1))
    values = confidence.ravel()
    for c in range(n_classes):
        members = order[bounds[c]:bounds[c + 1]]
        if members.size:
            k = math.ceil(share * members.size - 1e-9)
            # the k largest: a stable sort of the negated confidences keeps ties in position
            chosen[members[np.argsort(-values[members], kind="stable")[:k]]] = True
    return chosen.reshape(predicted.shape)
