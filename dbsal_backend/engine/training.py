"""The training recipe and loop for the segmentation models.

:class:`Recipe` and :func:`fit`: the training recipe the backend and the simulator share: Adam
on (optionally class-weighted) cross-entropy that ignores ``IGNORE_INDEX``, a polynomial
learning-rate decay over the run, flips and scale jitter, mixed precision on CUDA, optionally
ending with a moving average of the weights (:mod:`.averaging`). Fine-tuning
is calling :func:`fit` again on a trained model, optionally leaving out the labels it finds
least likely (:mod:`.trimming`) and with self-labels (:mod:`.self_labels`). :func:`train_one_epoch` is one pass, readable top to bottom (as in
torchvision's reference scripts). Scoring is :mod:`.metrics`, checkpoints :mod:`.checkpoints`.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from . import defaults
from .averaging import WeightAverage, check_decay
from .checks import check_fraction, check_int
from .constants import IGNORE_INDEX
from .data import SegmentationDataset
from .devices import pick_device
from .label_maps import inverse_sqrt_weights, pixel_counts
from .self_labels import self_labeled
from .trimming import check_trim, trimmed

__all__ = ["FINE_TUNE", "Recipe", "class_weights", "fit", "renews_anchor", "train_one_epoch"]

#: Where a training run after the first starts: ``first``, the first run's model (trained on the
#: seed set), so that no run inherits more than one fine-tuning; ``doubling``, the model of the
#: last run whose labeled images were at least twice its own start's (the first run's at first:
#: at most log2(n) fine-tunings in a chain, see :func:`renews_anchor`); ``last``, the previous
#: run's model (a chain of fine-tunings); ``off``, ImageNet weights (a fresh model every run,
#: trained as long as the first).
FINE_TUNE = ("first", "doubling", "last", "off")

logger = logging.getLogger(__name__)


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
        (:meth:`~dbsal_backend.engine.scoring.Scorer.confident_prelabels`); ``None``: off. The loss
        weights still come from the given labels alone.
    self_label_share : float or None
        Fine-tuning only, class-balanced self-labels (at most one of ``self_label`` and this
        is set): of the unlabeled pixels that each class is the pre-label of, over all the
        images, that class's most confident ``self_label_share`` are filled with it
        (:func:`~dbsal_backend.engine.self_labels.class_share_top`; class-balanced self-training,
        Zou et al., ECCV 2018). Rare classes get self-labels in proportion to their
        predictions, where one threshold gives nearly all of them to the frequent ones.
    trim : float or None
        Fine-tuning only: before training (and before any self-labels), per image and class,
        this share of the labeled pixels whose label the model finds least likely is left
        out (:func:`~dbsal_backend.engine.trimming.trimmed`: the small-loss rule against the
        other-class pixels that a region's one answer labels); ``None``: off. In ``(0, 0.5]``.
    """

    epochs: int = defaults.EPOCHS
    batch_size: int = defaults.BATCH_SIZE
    lr: float = defaults.LR
    weight_decay: float = 0.0
    class_weighted: bool = defaults.CLASS_WEIGHTED
    scale_range: tuple[float, float] | None = (0.75, 1.25)
    hflip: bool = True
    seed: int = 0
    amp: bool = True
    self_label: float | None = None
    self_label_share: float | None = None
    trim: float | None = None
    ema: float | None = None

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            check_int(f"Recipe.{name}", getattr(self, name), 1)
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"Recipe.lr must be a finite number > 0, got {self.lr!r}")
        if not (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0):
            raise ValueError(f"Recipe.weight_decay must be >= 0, got {self.weight_decay!r}")
        for name in ("self_label", "self_label_share"):
            if getattr(self, name) is not None:
                check_fraction(f"Recipe.{name}", getattr(self, name))
        if self.trim is not None:
            check_trim("Recipe.trim", self.trim)
        if self.ema is not None:
            check_decay("Recipe.ema", self.ema)
        if self.self_label is not None and self.self_label_share is not None:
            raise ValueError("Recipe.self_label and Recipe.self_label_share exclude each "
                             "other: set one of them")
        # The augmentation settings are checked by the dataset they configure.
        SegmentationDataset([], [], scale_range=self.scale_range, hflip=self.hflip,
                            seed=self.seed)


def class_weights(labels: np.ndarray | Sequence[np.ndarray], n_classes: int,
                  ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """The loss's class weights: inverse square-root frequency of the labeled pixels.

    :func:`~dbsal_backend.engine.label_maps.inverse_sqrt_weights` of the labels'
    :func:`~dbsal_backend.engine.label_maps.pixel_counts`: ``w_c = 1 / sqrt(n_c / N)``, normalised
    so that the classes with pixels average 1; classes without labeled pixels weigh 0.

    Returns
    -------
    torch.Tensor
        float32, shape ``(n_classes,)``.
    """
    return torch.tensor(inverse_sqrt_weights(pixel_counts(labels, n_classes, ignore_index)),
                        dtype=torch.float32)


def renews_anchor(fine_tune: str, anchor_images: int | None, images: int) -> bool:
    """Whether a model trained on ``images`` labeled images becomes the anchor, the model later
    runs fine-tune under ``first`` and ``doubling`` (``anchor_images``: the images of the anchor
    so far, None before the first): the first model always; under ``doubling`` also one trained
    on at least twice the anchor's images. Never under ``last`` and ``off`` (no anchor)."""
    if fine_tune not in FINE_TUNE:
        raise ValueError(f"fine_tune must be one of {FINE_TUNE}, got {fine_tune!r}")
    if fine_tune not in ("first", "doubling"):
        return False
    if anchor_images is None:
        return True
    return fine_tune == "doubling" and images >= 2 * anchor_images


def train_one_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, criterion: nn.Module,
                    device: torch.device, scaler: torch.amp.GradScaler,
                    average: WeightAverage | None = None) -> float:
    """One pass over ``loader``; returns the mean loss (NaN if every batch was unlabeled).
    ``average``, if given, is updated after each optimizer step."""
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
            if average is not None:
                average.update(model)
            total += loss.item()
            steps += 1
        scheduler.step()
    return total / steps if steps else math.nan


def fit(model: nn.Module, images: Sequence[np.ndarray], labels: Sequence[np.ndarray],
        recipe: Recipe, device: torch.device | str = "cpu",
        exact: Sequence[bool] | None = None) -> list[float]:
    """Train ``model`` on images and (partial) label maps with ``recipe``.

    Parameters
    ----------
    model : torch.nn.Module
        A model of :mod:`dbsal_backend.engine.networks` (new, or trained before: fine-tuning); moved to
        ``device`` and left there in eval mode.
    images : sequence of numpy.ndarray
        ``uint8 H x W x 3``, at the working resolution.
    labels : sequence of numpy.ndarray
        ``uint8 H x W``; ``IGNORE_INDEX`` where unlabeled.
    recipe : Recipe
        The settings.
    device : torch.device or str
        Where to train (``"auto"`` allowed).
    exact : sequence of bool or None
        Per image, whether its labels were given pixel by pixel (a whole image): ``recipe.trim``
        leaves those whole (:func:`~dbsal_backend.engine.trimming.trimmed`); ``None``: it trims
        every image.

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
    if recipe.trim is not None:
        labels = trimmed(model, images, labels, recipe.trim, weights, device, exact)
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
    average = None if recipe.ema is None else WeightAverage(model, recipe.ema)
    losses = []
    for epoch in range(recipe.epochs):
        dataset.set_epoch(epoch)
        start = time.perf_counter()
        losses.append(train_one_epoch(model, loader, optimizer, scheduler, criterion, device,
                                      scaler, average))
        logger.debug("epoch %d/%d loss %.4f (%.1fs)", epoch + 1, recipe.epochs, losses[-1],
                     time.perf_counter() - start)
    if average is not None:
        average.copy_to(model)
    model.eval()
    return losses
