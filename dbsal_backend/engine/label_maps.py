"""Per-class statistics of label maps, and the class weights made of them.

A label map is an integer array of class indices with ``IGNORE_INDEX`` (:mod:`.constants`)
where nobody labeled. :func:`pixel_counts` counts each class's labeled pixels;
:func:`inverse_sqrt_weights` turns the counts into class weights, for the loss
(:func:`~dbsal_backend.engine.training.class_weights`) and for class-balanced acquisition
(:attr:`~dbsal_backend.engine.active.QueryPolicy.class_balanced`).
"""

from __future__ import annotations

from typing import Iterable, Literal

import numpy as np

from .constants import IGNORE_INDEX

__all__ = ["inverse_sqrt_weights", "pixel_counts"]


def pixel_counts(label_maps: np.ndarray | Iterable[np.ndarray], n_classes: int,
                 ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Labeled pixels of each class over one label map or several (any shapes).

    Returns
    -------
    numpy.ndarray
        int64, shape ``(n_classes,)``.

    Raises
    ------
    TypeError
        A label map is not an integer array.
    ValueError
        A label value lies outside ``[0, n_classes)`` and is not ``ignore_index``.
    """
    arrays = [label_maps] if isinstance(label_maps, np.ndarray) else list(label_maps)
    counts = np.zeros(n_classes, dtype=np.int64)
    for array in arrays:
        array = np.asarray(array)
        if not np.issubdtype(array.dtype, np.integer):
            raise TypeError(f"labels must be integer arrays, got dtype {array.dtype}")
        values = array[array != ignore_index].astype(np.int64)
        if values.size and (values.min() < 0 or values.max() >= n_classes):
            raise ValueError(f"label values must be in [0, {n_classes}) or {ignore_index}, "
                             f"got {values.min()}..{values.max()}")
        counts += np.bincount(values.ravel(), minlength=n_classes)
    return counts


def inverse_sqrt_weights(counts: Iterable[int] | np.ndarray,
                         unseen: Literal["zero", "rarest"] = "zero") -> np.ndarray:
    """Class weights from pixel counts: ``w_c = 1 / sqrt(n_c / N)``, mean 1 over the classes
    with pixels.

    Parameters
    ----------
    counts : array_like
        Pixels of each class (:func:`pixel_counts`).
    unseen : {"zero", "rarest"}
        The weight of a class without pixels. ``"zero"`` (the loss): 0, and 0 for every class
        when nothing is labeled; such a class is never a target, and the weights stay finite.
        ``"rarest"`` (acquisition, after Cai et al., CVPR 2021): the largest weight of the
        seen classes (an unseen class is at least as rare), and 1 for every class when
        nothing is labeled.

    Returns
    -------
    numpy.ndarray
        float64, one weight per class.
    """
    if unseen not in ("zero", "rarest"):
        raise ValueError(f"unseen must be 'zero' or 'rarest', got {unseen!r}")
    counts = np.asarray(counts, dtype=np.float64)
    weights = np.zeros(counts.size) if unseen == "zero" else np.ones(counts.size)
    seen = counts > 0
    if seen.any():
        weights[seen] = 1.0 / np.sqrt(counts[seen] / counts.sum())
        weights[seen] /= weights[seen].mean()
        if unseen == "rarest":
            weights[~seen] = weights[seen].max()
    return weights
