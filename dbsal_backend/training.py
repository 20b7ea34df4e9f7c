"""Training, evaluation and checkpoints for the segmentation models.

- :class:`Recipe` and :func:`fit`: the training recipe the backend and the simulator share:
  Adam on (optionally class-weighted) cross-entropy that ignores ``IGNORE_INDEX``, a polynomial
  learning-rate decay over the run, flips and scale jitter, mixed precision on CUDA.
  Fine-tuning is calling :func:`fit` again on a trained model. :func:`train_one_epoch` is one
  pass, readable top to bottom (as in torchvision's reference scripts).
- :func:`evaluate`, :func:`confusion_matrix`, :func:`iou_per_class`, :func:`miou`: scoring.
- :func:`save_checkpoint` / :func:`load_checkpoint`: atomic, self-describing checkpoints.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from .constants import IGNORE_INDEX
from .data import SegmentationDataset, fit_side
from .networks import ARCHITECTURES, build_model, pick_device
from .scoring import Scorer

__all__ = [
    "CheckpointMismatch",
    "Recipe",
    "class_share_top",
    "class_weights",
    "confusion_matrix",
    "evaluate",
    "fit",
    "iou_per_class",
    "load_checkpoint",
    "miou",
    "save_checkpoint",
    "self_labeled",
    "train_one_epoch",
]

logger = logging.getLogger(__name__)

_CHECKPOINT_FORMAT = "dbsal-checkpoint"
_CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class Recipe:
    """How a model is trained (checked once, here).

    Attributes
    ----------
    epochs : int
        Passes over the labeled images per training run.
    batch_size : int
        Images per step (at most the number of images).
    lr : float
        Adam's initial learning rate; it decays as ``(1 - step / steps) ** 0.9``.
    weight_decay : float
        Adam's weight decay.
    class_weighted : bool
        Weight the loss by :func:`class_weights` of the labels.
    scale_range : (float, float) or None
        Random rescaling of each image (and its labels).
    hflip : bool
        Random horizontal flips.
    seed : int
        Seeds the shuffling, the augmentation and dropout.
    amp : bool
        Mixed precision (float16 autocast and gradient scaling), used on CUDA only.
    self_label : float or None
        Fine-tuning only: before training, fill each image's unlabeled pixels with the model's
        own pre-label where its probability is at least this
        (:meth:`~dbsal_backend.scoring.Scorer.confident_prelabels`); ``None``: off. The loss
        weights still come from the given labels alone.
    self_label_share : float or None
        Fine-tuning only, class-balanced self-labels (at most one of ``self_label`` and this
        is set): of the unlabeled pixels that each class is the pre-label of, over all the
        images, that class's most confident ``self_label_share`` are filled with it
        (:func:`class_share_top`; class-balanced self-training, Zou et al., ECCV 2018). Rare classes get self-labels in proportion to
        their predictions, where one threshold gives nearly all of them to the frequent ones.
    """

    epochs: int = 20
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.0
    class_weighted: bool = True
    scale_range: tuple[float, float] | None = (0.75, 1.25)
    hflip: bool = True
    seed: int = 0
    amp: bool = True
    self_label: float | None = None
    self_label_share: float | None = None

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Recipe.{name} must be an int >= 1, got {value!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"Recipe.lr must be a finite number > 0, got {self.lr!r}")
        if not (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0):
            raise ValueError(f"Recipe.weight_decay must be >= 0, got {self.weight_decay!r}")
        for name in ("self_label", "self_label_share"):
            if getattr(self, name) is not None:
                _check_fraction(f"Recipe.{name}", getattr(self, name))
        if self.self_label is not None and self.self_label_share is not None:
            raise ValueError("Recipe.self_label and Recipe.self_label_share exclude each "
                             "other: set one of them")
        # The augmentation settings are checked by the dataset they configure.
        SegmentationDataset([], [], scale_range=self.scale_range, hflip=self.hflip,
                            seed=self.seed)


def _check_fraction(name: str, value: object) -> None:
    """``value`` must be a number in ``(0, 1]``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ValueError(f"{name} must be in (0, 1], got {value!r}")


def class_weights(labels: np.ndarray | Sequence[np.ndarray], n_classes: int,
                  ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Loss weights from labeled pixel counts: inverse square-root frequency.

    ``w_c = 1 / sqrt(n_c / N)``, normalised so that the classes with pixels average 1. Classes
    without labeled pixels get weight 0 (they never occur as a target, so the weight only
    matters if the labels change; it keeps the weights finite).

    Parameters
    ----------
    labels : numpy.ndarray or sequence of numpy.ndarray
        Integer label maps (any shapes).
    n_classes : int
        Number of classes.
    ignore_index : int
        Label value that is not counted.

    Returns
    -------
    torch.Tensor
        float32, shape ``(n_classes,)``.
    """
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 1:
        raise ValueError(f"n_classes must be an int >= 1, got {n_classes!r}")
    arrays = [labels] if isinstance(labels, np.ndarray) else list(labels)
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
    present = counts > 0
    weights = np.zeros(n_classes, dtype=np.float64)
    if present.any():
        weights[present] = 1.0 / np.sqrt(counts[present] / counts.sum())
        weights[present] /= weights[present].mean()
    return torch.tensor(weights, dtype=torch.float32)


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
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 1:
        raise ValueError(f"n_classes must be an int >= 1, got {n_classes!r}")
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


def train_one_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, criterion: nn.Module,
                    device: torch.device, scaler: torch.amp.GradScaler) -> float:
    """One pass over ``loader``; returns the mean loss (NaN if every batch was unlabeled)."""
    model.train()
    total, steps = 0.0, 0
    for images, labels in loader:
        if (labels != IGNORE_INDEX).any():  # a batch without labels gives no gradient
            images, labels = images.to(device), labels.to(device)
            with torch.autocast(device.type, dtype=torch.float16, enabled=scaler.is_enabled()):
                logits = model(images)
            loss = criterion(logits.float(), labels)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            total += loss.item()
            steps += 1
        scheduler.step()
    return total / steps if steps else math.nan


def fit(model: nn.Module, images: Sequence[np.ndarray], labels: Sequence[np.ndarray],
        recipe: Recipe, device: torch.device | str = "cpu") -> list[float]:
    """Train ``model`` on images and (partial) label maps with ``recipe``.

    Parameters
    ----------
    model : torch.nn.Module
        A model of :mod:`dbsal_backend.networks` (new, or trained before: fine-tuning); moved to
        ``device`` and left there in eval mode.
    images : sequence of numpy.ndarray
        ``uint8 H x W x 3``, at the working resolution.
    labels : sequence of numpy.ndarray
        ``uint8 H x W``; ``IGNORE_INDEX`` where unlabeled.
    recipe : Recipe
        The settings.
    device : torch.device or str
        Where to train (``"auto"`` allowed).

    Returns
    -------
    list of float
        The mean loss of each epoch.
    """
    if not images:
        raise ValueError("fit needs at least one labeled image")
    device = pick_device(device) if isinstance(device, str) else device
    n_classes = model.n_classes
    sizes = {image.shape[:2] for image in images}
    crop = None if len(sizes) == 1 else (min(h for h, _ in sizes), min(w for _, w in sizes))
    weights = class_weights(labels, n_classes) if recipe.class_weighted else None
    if recipe.self_label is not None or recipe.self_label_share is not None:
        labels = self_labeled(model, images, labels, recipe.self_label, weights, device,
                              share=recipe.self_label_share)
    dataset = SegmentationDataset(images, labels, crop_size=crop, scale_range=recipe.scale_range,
                                  hflip=recipe.hflip, seed=recipe.seed)
    torch.manual_seed(recipe.seed)
    loader = DataLoader(dataset, batch_size=min(recipe.batch_size, len(dataset)), shuffle=True,
                        generator=torch.Generator().manual_seed(recipe.seed))
    weight = None if weights is None else weights.to(device)
    criterion = nn.CrossEntropyLoss(weight=weight, ignore_index=IGNORE_INDEX)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr,
                                 weight_decay=recipe.weight_decay)
    steps = recipe.epochs * len(loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: (1 - min(step, steps - 1) / steps) ** 0.9)
    scaler = torch.amp.GradScaler("cuda", enabled=recipe.amp and device.type == "cuda")
    losses = []
    for epoch in range(recipe.epochs):
        dataset.set_epoch(epoch)
        start = time.perf_counter()
        losses.append(train_one_epoch(model, loader, optimizer, scheduler, criterion, device,
                                      scaler))
        logger.debug("epoch %d/%d loss %.4f (%.1fs)", epoch + 1, recipe.epochs, losses[-1],
                     time.perf_counter() - start)
    model.eval()
    return losses


def self_labeled(model: nn.Module, images: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                 threshold: float | None = None, weights: torch.Tensor | None = None,
                 device: torch.device | str = "cpu", *, share: float | None = None
                 ) -> list[np.ndarray]:
    """``labels`` with their ``IGNORE_INDEX`` pixels filled by the model's confident pre-labels.

    Self-training for fine-tuning: where a person labeled nothing (the superpixels a step did
    not ask about, void), the trained model's pre-label
    (:meth:`~dbsal_backend.scoring.Scorer.prelabel_confidence`, corrected by the loss's class
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
    _check_fraction("threshold" if share is None else "share",
                    threshold if share is None else share)
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
    _check_fraction("share", share)
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


class CheckpointMismatch(ValueError):
    """A checkpoint was made for other classes or another architecture than expected."""


def _check_meta(meta: object) -> None:
    if not isinstance(meta, dict):
        raise TypeError(f"meta must be a dict, got {type(meta).__name__}")
    missing = [key for key in ("arch", "classes", "settings") if key not in meta]
    if missing:
        raise ValueError(f"meta is missing {missing}; it needs 'arch', 'classes' and 'settings'")
    if meta["arch"] not in ARCHITECTURES:
        raise ValueError(f"meta['arch'] must be one of {ARCHITECTURES}, got {meta['arch']!r}")
    classes = meta["classes"]
    if not isinstance(classes, (list, tuple)) or not classes \
            or not all(isinstance(name, str) for name in classes):
        raise ValueError(f"meta['classes'] must be a non-empty list of class names, "
                         f"got {classes!r}")
    if not isinstance(meta["settings"], dict):
        raise ValueError(f"meta['settings'] must be a dict, "
                         f"got {type(meta['settings']).__name__}")


def save_checkpoint(path: str | os.PathLike, model: nn.Module, meta: dict) -> None:
    """Write the model weights and ``meta`` to ``path`` atomically.

    The file is written to a temporary file in the same directory and moved over ``path`` with
    ``os.replace``, so ``path`` is either the old or the complete new checkpoint, never a
    partial one. Parent directories are created.

    Parameters
    ----------
    path : path
        Destination file.
    model : torch.nn.Module
        The model; its ``state_dict`` is saved (moved to CPU).
    meta : dict
        JSON-compatible metadata with at least ``arch`` (one of ``networks.ARCHITECTURES``),
        ``classes`` (list of class names, one per model output) and ``settings`` (dict).
    """
    _check_meta(meta)
    try:
        json.dumps(meta)
    except (TypeError, ValueError) as err:
        raise ValueError(f"meta must hold only JSON-compatible values: {err}") from err
    n_classes = getattr(model, "n_classes", None)
    if n_classes is not None and n_classes != len(meta["classes"]):
        raise ValueError(f"the model has {n_classes} outputs but meta['classes'] names "
                         f"{len(meta['classes'])} classes")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": _CHECKPOINT_FORMAT,
        "version": _CHECKPOINT_VERSION,
        "meta": meta,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | os.PathLike, expected_classes: Sequence[str] | None = None,
                    expected_arch: str | None = None,
                    device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild a model from a checkpoint written by :func:`save_checkpoint`.

    The model is ``networks.build_model(meta["arch"], len(meta["classes"]), pretrained=False)``
    with the saved weights, on ``device``, in eval mode.

    Parameters
    ----------
    path : path
        Checkpoint file.
    expected_classes : sequence of str, optional
        Class names (in order) the checkpoint must have been trained for.
    expected_arch : str, optional
        Architecture the checkpoint must have.
    device : torch.device or str
        Where to put the model (``"auto"`` allowed).

    Returns
    -------
    model : torch.nn.Module
    meta : dict

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        The file is not a readable checkpoint, or its weights do not fit its architecture.
    CheckpointMismatch
        Classes or architecture differ from the expected ones.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for truncated or foreign files
        raise ValueError(f"checkpoint {path} is corrupt or not a checkpoint: {err}") from err
    if not isinstance(payload, dict) or payload.get("format") != _CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a dbsal checkpoint (no '{_CHECKPOINT_FORMAT}' marker)")
    if payload.get("version") != _CHECKPOINT_VERSION:
        raise ValueError(f"checkpoint {path} has format version {payload.get('version')!r}; "
                         f"this code reads version {_CHECKPOINT_VERSION}")
    meta = payload.get("meta")
    _check_meta(meta)
    if expected_arch is not None and meta["arch"] != expected_arch:
        raise CheckpointMismatch(f"checkpoint {path} is a {meta['arch']!r} model, "
                                 f"expected {expected_arch!r}")
    if expected_classes is not None and list(meta["classes"]) != list(expected_classes):
        raise CheckpointMismatch(f"checkpoint {path} was trained for classes "
                                 f"{list(meta['classes'])}, expected {list(expected_classes)}")
    model = build_model(meta["arch"], len(meta["classes"]), pretrained=False)
    try:
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, KeyError) as err:
        raise ValueError(f"checkpoint {path}: the weights do not fit a {meta['arch']!r} model "
                         f"with {len(meta['classes'])} classes: {err}") from err
    model.to(device if isinstance(device, torch.device) else pick_device(device))
    model.eval()
    return model, meta
