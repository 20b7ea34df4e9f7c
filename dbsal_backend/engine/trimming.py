"""Leaving out the labels the model finds least likely before it fine-tunes on them.

A region answered with one class (dominant-class answers) gives that class to the parts of
other classes in it too: on the default's labels after a long run, 18% (Peanut) and 20%
(CamVid) of the region-labeled pixels (``bench/label_noise.py``). The small-loss rule for noisy labels
(co-teaching, Han et al., NeurIPS 2018) trains on the labels the model fits best and leaves
out the rest: here, before each fine-tuning, per image and class, the ``share`` of the labeled
pixels whose label the model gives the lowest probability. :func:`least_likely` is the rule on
arrays; :func:`trimmed` runs the model.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from .checks import is_number
from .constants import IGNORE_INDEX
from .devices import pick_device
from .scoring import Scorer

__all__ = ["check_trim", "least_likely", "trimmed"]


def check_trim(name: str, share: object) -> None:
    """``share`` must be a number in ``(0, 0.5]`` (more than half would leave out the labels the
    model fits, not the ones it does not)."""
    if not is_number(share) or not 0 < share <= 0.5:
        raise ValueError(f"{name} must be in (0, 0.5], got {share!r}")


def least_likely(labels: np.ndarray, probability: np.ndarray, share: float) -> np.ndarray:
    """Which labeled pixels to leave out: of each class's labeled pixels, the ``floor(share *
    n)`` whose ``probability`` (of their label) is lowest (ties broken by position).

    Parameters
    ----------
    labels : numpy.ndarray
        ``uint8 h x w``; ``IGNORE_INDEX`` where unlabeled (never left out: nothing to leave).
    probability : numpy.ndarray
        ``float h x w``: the probability the model gives each pixel's label.
    share : float
        In ``(0, 0.5]``.

    Returns
    -------
    numpy.ndarray
        ``bool h x w``.
    """
    check_trim("share", share)
    if labels.shape != probability.shape:
        raise ValueError(f"labels {labels.shape} and probability {probability.shape} differ")
    flat_labels, flat_prob = labels.ravel(), probability.ravel()
    out = np.zeros(flat_labels.size, dtype=bool)
    for c in np.unique(flat_labels):
        if c == IGNORE_INDEX:
            continue
        where = np.flatnonzero(flat_labels == c)
        k = int(share * where.size)
        if k:
            out[where[np.argsort(flat_prob[where], kind="stable")[:k]]] = True
    return out.reshape(labels.shape)


def trimmed(model: nn.Module, images: Sequence[np.ndarray], labels: Sequence[np.ndarray],
            share: float, weights: torch.Tensor | None = None,
            device: torch.device | str = "cpu",
            exact: Sequence[bool] | None = None) -> list[np.ndarray]:
    """``labels`` with their :func:`least_likely` pixels set to ``IGNORE_INDEX``, judged by
    ``model`` (one pass over each image and its mirror,
    :meth:`~dbsal_backend.engine.scoring.Scorer.label_probability`, corrected by the loss's
    class ``weights``). Images and labels are at the working resolution; the given arrays are
    not changed. ``exact``: per image, whether its labels were given pixel by pixel (a whole
    image labeled by a person, no region answered with one class): those are kept whole
    (``None``: every image is trimmed)."""
    check_trim("share", share)
    if exact is None:
        exact = [False] * len(labels)
    elif len(exact) != len(labels):
        raise ValueError(f"exact has {len(exact)} flags for {len(labels)} label maps")
    device = pick_device(device) if isinstance(device, str) else device
    side = max(max(image.shape[:2]) for image in images)
    scorer = Scorer(model.to(device), model.n_classes, mc_samples=1, max_side=side,
                    device=device, class_weights=None if weights is None else weights.numpy())
    out = []
    for image, label, keep in zip(images, labels, exact):
        if keep:
            out.append(label)
            continue
        probability = next(scorer.label_probability([image], [label]))
        out.append(np.where(least_likely(label, probability, share), IGNORE_INDEX,
                            label).astype(label.dtype))
    return out
