"""Score images by MC-dropout uncertainty: the model side of an active-learning step.

:class:`Scorer` turns ``uint8`` RGB images into :class:`ScoreMap` s: each image is shrunk to the
model's working resolution (``max_side``), scored in batches of images of one size, and
summarised as a normalised pixel-uncertainty map, the predicted class per pixel and the image
score (the mean of the map). Uncertainty is divided by the heuristic's largest possible value
(:func:`max_uncertainty`), so maps and scores lie in ``[0, 1]`` and ``1 - uncertainty`` reads as
a confidence, which is what Label Studio shows and sorts by.

The masks of the dropout layers are drawn from a generator seeded with ``seed`` and shared by
the images of a batch (:func:`~dbsal_backend.engine.uncertainty.shared_masks`), so an image's score
depends on the model, the seed and the image alone: batching, order and the machine's other
work do not change it. The backend and the simulator both score with this class.

:meth:`Scorer.score_stream` scores a stream of images with several threads at once, each with
its own copy of the model (on a CPU, one thread per core scoring its own batch is about 1.7
times as fast as all cores on one batch: the many small operations of MC dropout do not split
well across threads); results come back in order and the scores do not change.
"""

from __future__ import annotations

import copy
import itertools
import math
import queue
import threading
from collections import defaultdict, deque
from collections.abc import Hashable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from . import defaults
from .constants import IGNORE_INDEX
from .data import fit_side
from .folding import fold_batch_norms
from .uncertainty import (HEURISTICS, NEEDS_EXPECTED_ENTROPY, kept_modes, mc_dropout,
                          pixel_uncertainty)

__all__ = ["ScoreMap", "Scorer", "max_uncertainty"]


def max_uncertainty(heuristic: str, n_classes: int) -> float:
    """The largest value the pixel heuristic ``heuristic`` takes with ``n_classes`` classes."""
    bits = math.log2(max(n_classes, 2))
    return {"entropy": bits, "bald": bits, "authors": 2 * bits, "margin": 1.0}[heuristic]


@dataclass(frozen=True)
class ScoreMap:
    """What the model says about one image, at the working resolution.

    Attributes
    ----------
    score : float
        Mean normalised pixel uncertainty, in ``[0, 1]`` (higher: less sure).
    uncertainty : numpy.ndarray
        ``float32 h x w`` normalised pixel uncertainty in ``[0, 1]``.
    predicted : numpy.ndarray
        ``uint8 h x w``, the class of the mean softmax.
    """

    score: float
    uncertainty: np.ndarray
    predicted: np.ndarray

    @property
    def confidence(self) -> float:
        """``1 - score``."""
        return 1.0 - self.score


class Scorer:
    """MC-dropout scoring of images with one model.

    Parameters
    ----------
    model : torch.nn.Module
        A segmentation model of :mod:`dbsal_backend.engine.networks` (``encode``/``decode``), on
        ``device``. The scorer runs its own inference copy (:attr:`model`: batch norms folded
        into the convolutions, channels-last encoder), taken now: later changes to ``model``
        (training) need a new scorer.
    n_classes : int
        Number of classes the model predicts.
    heuristic : str
        A key of :data:`~dbsal_backend.engine.uncertainty.HEURISTICS`.
    mc_samples : int
        Stochastic passes per image.
    max_side : int
        Longer image side at which the model runs.
    seed : int
        Seed of the dropout masks.
    batch_size : int
        Images (of one size) per forward pass.
    device : torch.device, optional
        Where the model runs; default the device of its parameters.
    lock : threading.Lock, optional
        Held while the model runs (MC dropout switches its train/eval flags), for a scorer that
        several threads use.
    class_weights : array_like, optional
        The loss weights the model was trained with (:func:`~dbsal_backend.engine.training.
        class_weights`). A model trained with class-weighted cross-entropy learns
        ``p(c | x) * w_c`` (up to normalisation) and over-predicts rare classes; the predicted
        class (the pre-label) is then ``argmax_c p(c | x) / w_c``. Uncertainty is unchanged.
    """

    def __init__(self, model: nn.Module, n_classes: int, *, heuristic: str = defaults.HEURISTIC,
                 mc_samples: int = defaults.MC_SAMPLES, max_side: int = defaults.MAX_SIDE,
                 seed: int = 0, batch_size: int = defaults.SCORE_BATCH_SIZE,
                 device: torch.device | None = None, lock: threading.Lock | None = None,
                 class_weights: Sequence[float] | np.ndarray | None = None) -> None:
        if heuristic not in HEURISTICS:
            raise ValueError(f"unknown heuristic {heuristic!r}; expected one of {sorted(HEURISTICS)}")
        self.device = device or next(model.parameters()).device
        # folded batch norms and channels-last convolutions (depthwise ones above all) make the
        # encoder about twice as fast on CPUs; the head, which runs once per MC pass on few
        # channels, stays plain
        self.lock = lock or threading.Lock()
        example = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        with self.lock:  # the model is shared: its train/eval flags are switched while folding
            self.model = fold_batch_norms(model, example.to(self.device))
        getattr(self.model, "encoder", self.model).to(memory_format=torch.channels_last)
        self.n_classes = n_classes
        self.heuristic = heuristic
        self.mc_samples = mc_samples
        self.max_side = max_side
        self.seed = seed
        self.batch_size = batch_size
        self._norm = max_uncertainty(heuristic, n_classes)
        self._copies: list[tuple[nn.Module, threading.Lock]] = []  # more copies, for workers
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]
        self._prior = None
        if class_weights is not None:
            w = np.asarray(class_weights, dtype=np.float32)
            if w.shape != (n_classes,) or not np.isfinite(w).all() or (w < 0).any():
                raise ValueError(f"class_weights must be {n_classes} finite values >= 0")
            if (w > 0).any():
                w = np.where(w > 0, w, w.max())
                self._prior = torch.from_numpy(1.0 / w).view(1, -1, 1, 1)

    def score(self, images: Sequence[np.ndarray]) -> list[ScoreMap]:
        """Score ``uint8`` RGB images ``H x W x 3``; one :class:`ScoreMap` per image, in order."""
        return self._score(images, self.model, self.lock)

    def _score(self, images: Sequence[np.ndarray], model: nn.Module,
               lock: threading.Lock) -> list[ScoreMap]:
        """:meth:`score` with ``model`` (this scorer's or a copy) under ``lock``."""
        small = [fit_side(image, self.max_side) for image in images]
        by_size: dict[tuple[int, int], list[int]] = defaultdict(list)
        for index, image in enumerate(small):
            by_size[image.shape[:2]].append(index)
        out: list[ScoreMap | None] = [None] * len(small)
        for indices in by_size.values():
            for start in range(0, len(indices), self.batch_size):
                batch = indices[start:start + self.batch_size]
                maps = self._score_batch([small[i] for i in batch], model, lock)
                for index, result in zip(batch, maps):
                    out[index] = result
        return out  # type: ignore[return-value]

    def prelabels(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The classes to pre-label ``images`` with: ``uint8 h x w`` at the working resolution.

        One pass without dropout over the image and one over its mirror, their softmax
        averaged and corrected for the loss's class weights (as :attr:`ScoreMap.predicted`).
        Only the queried images need it (a step's few), so it is not part of :meth:`score`;
        on a CPU it takes 0.4 (max side 512) to 1 (240) times as long as :meth:`score` of the
        image (EfficientNet-Lite0, T = 20): two whole passes against one encoder pass and
        T head passes.
        On CamVid's step-1 queries (3 seeds) it got 3.5 to 6.8 points more pre-labels right
        than the MC mean of :meth:`score`, 52% against 47% (``bench/prelabels.py``); without
        the mirror, 48%.
        """
        return [self._classes(probs)[0] for probs in self._prelabel_probs(images)]

    def confident_prelabels(self, images: Sequence[np.ndarray], threshold: float
                            ) -> list[np.ndarray]:
        """:meth:`prelabels` where the model is sure of them, ``IGNORE_INDEX`` elsewhere.

        A pixel keeps its pre-label when that class's probability (the mirrored average,
        corrected for the class weights and normalised again, :meth:`prelabel_confidence`) is
        at least ``threshold``: the self-labels of :func:`~dbsal_backend.engine.training.fit`.
        """
        out = []
        for labels, confidence in self.prelabel_confidence(images):
            labels[confidence < threshold] = IGNORE_INDEX
            out.append(labels)
        return out

    def prelabel_confidence(self, images: Sequence[np.ndarray]
                            ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Per image, its :meth:`prelabels` (``uint8 h x w``) and their probability
        (``float32 h x w``: the mirrored average, corrected for the class weights and
        normalised again), one image at a time."""
        for probs in self._corrected_probs(images):
            top = probs.max(1)
            yield (top.indices[0].to(torch.uint8).cpu().numpy(),
                   top.values[0].float().cpu().numpy())

    def label_probability(self, images: Sequence[np.ndarray], labels: Sequence[np.ndarray]
                          ) -> Iterator[np.ndarray]:
        """Per image, the probability the model gives each pixel's label (``float32 h x w``:
        the mirrored average, corrected for the class weights and normalised again, as
        :meth:`prelabel_confidence`; 1 where the label is ``IGNORE_INDEX``). Images and labels
        are at the working resolution (the images no larger than ``max_side``)."""
        for probs, label in zip(self._corrected_probs(images), labels):
            probs = probs[0].float().cpu()
            if probs.shape[1:] != label.shape:
                raise ValueError(f"labels of shape {label.shape} for an image scored at "
                                 f"{tuple(probs.shape[1:])}")
            labeled = label != IGNORE_INDEX
            given = torch.from_numpy(np.where(labeled, label, 0).astype(np.int64))
            out = probs.gather(0, given[None])[0].numpy()
            out[~labeled] = 1.0
            yield out

    def _corrected_probs(self, images: Sequence[np.ndarray]) -> Iterator[torch.Tensor]:
        """:meth:`_prelabel_probs` corrected for the class weights and normalised again."""
        for probs in self._prelabel_probs(images):
            if self._prior is not None:
                probs = probs * self._prior.to(probs.device)
                probs = probs / probs.sum(1, keepdim=True).clamp_min(1e-12)
            yield probs

    def _prelabel_probs(self, images: Sequence[np.ndarray]) -> Iterator[torch.Tensor]:
        """Per image, ``1 x C x h x w`` softmax of one pass without dropout over the image and
        its mirror, averaged (not corrected for the class weights)."""
        autocast = torch.autocast(device_type=self.device.type,
                                  enabled=self.device.type == "cuda")
        for image in images:
            small = fit_side(image, self.max_side)
            x = _tensor([small, np.ascontiguousarray(small[:, ::-1])]).to(self.device)
            with self.lock, kept_modes(self.model), torch.no_grad(), autocast:
                logits = self.model.eval()(x)
            probs = torch.softmax(logits.float(), dim=1)
            yield (probs[:1] + probs[1:].flip(-1)) / 2

    def score_stream(self, pool: Iterable[tuple[Hashable, np.ndarray]], workers: int = 1
                     ) -> Iterator[tuple[Hashable, np.ndarray, ScoreMap]]:
        """Score ``(key, image)`` pairs in batches of :attr:`batch_size`, ``workers`` batches
        at a time; yields ``(key, image, score_map)`` in the pool's order.

        Each worker thread scores with its own copy of the inference model (made on first use
        and kept), so give each a share of the torch threads (``torch.set_num_threads``);
        the scores are those of :meth:`score`. At most ``2 * workers`` batches are held at
        once, whatever the pool's length. An error in a batch is raised here, in order.
        """
        batches = _batched(pool, self.batch_size)
        if workers == 1:
            for batch in batches:
                yield from _zip(batch, self.score([image for _, image in batch]))
            return
        copies: queue.SimpleQueue = queue.SimpleQueue()
        for replica in self._replicas(workers):
            copies.put(replica)

        def work(batch: list[tuple[Hashable, np.ndarray]]) -> list[ScoreMap]:
            model, lock = copies.get()
            try:
                return self._score([image for _, image in batch], model, lock)
            finally:
                copies.put((model, lock))

        pending: deque = deque()
        with ThreadPoolExecutor(workers, thread_name_prefix="dbsal-score") as executor:
            try:
                for batch in batches:
                    pending.append((batch, executor.submit(work, batch)))
                    while len(pending) >= 2 * workers:
                        done, future = pending.popleft()
                        yield from _zip(done, future.result())
                while pending:
                    done, future = pending.popleft()
                    yield from _zip(done, future.result())
            finally:  # an error or a consumer that stops early: drop what has not started
                for _, future in pending:
                    future.cancel()

    def _replicas(self, n: int) -> list[tuple[nn.Module, threading.Lock]]:
        """``n`` (model, lock) pairs: this scorer's own and ``n - 1`` kept copies."""
        with self.lock:
            while len(self._copies) < n - 1:
                self._copies.append((copy.deepcopy(self.model), threading.Lock()))
        return [(self.model, self.lock), *self._copies[:n - 1]]

    def _score_batch(self, images: list[np.ndarray], model: nn.Module,
                     lock: threading.Lock) -> list[ScoreMap]:
        x = _tensor(images)
        with lock:
            stats = mc_dropout(model, x.to(self.device), n_samples=self.mc_samples,
                               mode="head", seed=self.seed,
                               expected_entropy=self.heuristic in NEEDS_EXPECTED_ENTROPY)
        u = pixel_uncertainty(stats, self.heuristic).div_(self._norm).clamp_(0.0, 1.0)
        predicted = self._classes(stats.mean_probs)
        u = u.float().cpu().numpy()
        return [ScoreMap(float(u[b].mean(dtype=np.float64)), u[b], predicted[b])
                for b in range(len(images))]


    def _classes(self, probs: torch.Tensor) -> np.ndarray:
        """``uint8 B x h x w``: the class of ``B x C x h x w`` probabilities, corrected for the
        loss's class weights."""
        if self._prior is not None:
            probs = probs * self._prior.to(probs.device)
        return probs.max(1).indices.to(torch.uint8).cpu().numpy()  # 3x argmax's speed


def _tensor(images: Sequence[np.ndarray]) -> torch.Tensor:
    """``uint8 h x w x 3`` images of one size -> ``float B x 3 x h x w`` in ``[0, 1]``,
    channels-last."""
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255)
    return x.contiguous(memory_format=torch.channels_last)


def _batched(items: Iterable, n: int) -> Iterator[list]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, n)):
        yield batch


def _zip(batch: list[tuple[Hashable, np.ndarray]], maps: list[ScoreMap]
         ) -> Iterator[tuple[Hashable, np.ndarray, ScoreMap]]:
    for (key, image), scores in zip(batch, maps):
        yield key, image, scores
