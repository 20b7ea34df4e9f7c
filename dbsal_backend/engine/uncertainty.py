"""MC-dropout uncertainty for segmentation models and pixel-wise heuristics.

A model follows the contract of :mod:`dbsal_backend.engine.networks`: ``encode(x)`` is deterministic in
eval mode and holds no dropout, ``decode(features)`` holds every dropout layer and returns logits
``B x C x H x W`` at the input size, and ``forward(x) == decode(encode(x))``.

:func:`mc_dropout` runs ``T`` stochastic passes with dropout on and batch norm in eval mode and
keeps running sums only, so memory does not grow with ``T``. The result, :class:`McStats`, holds
what every heuristic needs: the mean softmax over the passes and the mean per-pass entropy.

Heuristics map :class:`McStats` to a ``B x H x W`` map where higher means more uncertain:

==============  ================================================  =====================
name            formula                                           range
==============  ================================================  =====================
``entropy``     ``H[mean p]`` (predictive entropy)                ``[0, log2 C]`` bits
``bald``        ``H[mean p] - E[H[p]]`` (mutual information)      ``[0, log2 C]`` bits
``margin``      ``1 - (p1 - p2)`` of the mean probabilities       ``[0, 1]``
``authors``     ``H[mean p] + E[H[p]]`` (DBSAL authors' "BALD")   ``[0, 2 log2 C]`` bits
==============  ================================================  =====================
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Callable, NamedTuple

import torch
from torch import nn

from . import defaults
from .caches import LruCache

__all__ = [
    "DROPOUT_TYPES",
    "MCDropout",
    "HEURISTICS",
    "NEEDS_EXPECTED_ENTROPY",
    "McStats",
    "authors_bald",
    "bald",
    "enable_mc_dropout",
    "entropy",
    "margin",
    "mc_dropout",
    "pixel_uncertainty",
    "predictive_entropy",
    "shared_masks",
]

_masks = threading.local()
_MASK_CACHE: LruCache[torch.Tensor] = LruCache(256 * 2**20, weigh=lambda m: m.numel() * 4)


class _MaskSource:
    """The masks of one :func:`shared_masks` block, drawn in call order from a generator seeded
    with ``seed``. Masks are remembered by ``(seed, device, every shape drawn so far)``: the
    next block that draws the same shapes (the next image of the same size) gets the very same
    masks without drawing them again, which saves MC dropout its random-number cost."""

    def __init__(self, seed: int, device: torch.device | str) -> None:
        self.seed = int(seed)
        self.device = torch.device(device)
        self.shapes: list[tuple[tuple[int, ...], float]] = []
        self.generator: torch.Generator | None = None
        self.drawn = 0

    def _draw(self, shape: tuple[int, ...], keep: float) -> torch.Tensor:
        mask = torch.empty((1, *shape), device=self.device, dtype=torch.float32)
        return mask.bernoulli_(keep, generator=self.generator).div_(keep)

    def next(self, shape: tuple[int, ...], keep: float) -> torch.Tensor:
        self.shapes.append((tuple(shape), keep))
        key = (self.seed, str(self.device), tuple(self.shapes))
        mask = _MASK_CACHE.get(key)
        if mask is not None:
            return mask
        if self.generator is None or self.drawn != len(self.shapes) - 1:
            self.generator = torch.Generator(device=self.device).manual_seed(self.seed)
            for earlier, k in self.shapes[:-1]:  # a draw depends on every draw before it
                self._draw(earlier, k)
            self.drawn = len(self.shapes) - 1
        mask = self._draw(shape, keep)
        self.drawn += 1
        _MASK_CACHE.put(key, mask)  # bytes of float32
        return mask


class MCDropout(nn.Dropout):
    """Element-wise dropout whose masks can be drawn from a seeded generator and shared by a batch.

    Outside :func:`shared_masks` it is ``nn.Dropout``. Inside, every call takes the next mask
    of shape ``1 x ...`` of the block's seeded sequence and applies it to every image of the
    batch, so an image's MC-dropout statistics depend only on the seed and its size, not on
    which other images share its batch or in which order images are scored: batched scoring
    gives the same numbers as scoring one image at a time, and a step can be repeated exactly.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        source = getattr(_masks, "source", None)
        if source is None or not self.training or self.p == 0:
            return super().forward(x)
        return x * source.next(tuple(x.shape[1:]), 1.0 - self.p).to(x.dtype)


@contextmanager
def shared_masks(seed: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Inside the block, :class:`MCDropout` layers of this thread take shared masks from the
    sequence seeded with ``seed`` (on ``device``)."""
    previous = getattr(_masks, "source", None)
    _masks.source = _MaskSource(seed, device)
    try:
        yield
    finally:
        _masks.source = previous


#: Module types switched back to train mode by :func:`enable_mc_dropout`.
DROPOUT_TYPES: tuple[type[nn.Module], ...] = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)

_MODES = ("head", "full")
_LN2 = math.log(2.0)


class McStats(NamedTuple):
    """Summary of ``T`` MC-dropout passes over a batch.

    Attributes
    ----------
    mean_probs : torch.Tensor
        ``B x C x H x W`` float32, the softmax averaged over the passes.
    expected_entropy : torch.Tensor or None
        ``B x H x W`` float32, the entropy of each pass's softmax averaged over the passes, in
        bits; None when :func:`mc_dropout` was asked not to compute it (the heuristics that
        need it, ``bald`` and ``authors``, then refuse the stats).
    """

    mean_probs: torch.Tensor
    expected_entropy: torch.Tensor | None


def entropy(probs: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Shannon entropy in bits along ``dim``, with ``0 * log 0 = 0``.

    Parameters
    ----------
    probs : torch.Tensor
        Probabilities (non-negative, summing to 1 along ``dim``).
    dim : int
        The class dimension (1 for ``B x C x H x W``).

    Returns
    -------
    torch.Tensor
        ``probs`` with ``dim`` reduced.
    """
    if not isinstance(probs, torch.Tensor):
        raise TypeError(f"probs must be a torch.Tensor, got {type(probs).__name__}")
    return -torch.special.xlogy(probs, probs).sum(dim=dim) / _LN2


def enable_mc_dropout(model: nn.Module) -> nn.Module:
    """Put ``model`` in eval mode, then every dropout module back in train mode.

    Batch norm then uses its running statistics (and does not update them) while dropout stays
    stochastic. Modules of :data:`DROPOUT_TYPES` (and their subclasses) count as dropout.

    Returns
    -------
    torch.nn.Module
        ``model`` itself, changed in place.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    model.eval()
    for module in model.modules():
        if isinstance(module, DROPOUT_TYPES):
            module.train()
    return model


@contextmanager
def kept_modes(model: nn.Module) -> Iterator[nn.Module]:
    """Run the block with ``model``, then give every module back its train/eval flag (also on
    error): the model may be shared, and the block may switch them."""
    previous = [(module, module.training) for module in model.modules()]
    try:
        yield model
    finally:
        for module, training in previous:
            module.train(training)


def _check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must have shape B x 3 x H x W, got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(f"images must be a float tensor in [0, 1], got dtype {images.dtype}")
    if min(images.shape) == 0:
        raise ValueError(f"images must not be empty, got shape {tuple(images.shape)}")


def mc_dropout(
    model: nn.Module, images: torch.Tensor, n_samples: int = 20, mode: str = "head",
    seed: int | None = None, expected_entropy: bool = True,
) -> McStats:
    """Run ``n_samples`` MC-dropout passes and summarise them online.

    Parameters
    ----------
    model : torch.nn.Module
        A segmentation model; with ``mode="head"`` it must have ``encode`` and ``decode``.
    images : torch.Tensor
        ``B x 3 x H x W`` float in ``[0, 1]``, on the model's device.
    n_samples : int
        Number of stochastic passes ``T >= 1``.
    mode : {"head", "full"}
        ``"head"`` runs ``encode`` once and ``decode`` ``T`` times (valid because the encoder is
        deterministic); ``"full"`` runs the whole model ``T`` times (the reference). Both consume
        the random number generator identically, so the same seed gives the same result.
    seed : int, optional
        Draw the masks of :class:`MCDropout` layers from a generator with this seed, one mask per
        layer and pass shared by the batch (see :class:`MCDropout`): the result for an image is
        then the same whatever it is batched with. Without it, torch's global generator is used.
    expected_entropy : bool
        Also average each pass's entropy (needed by ``bald`` and ``authors``, see
        :data:`NEEDS_EXPECTED_ENTROPY`); without it a pass costs one softmax at full size
        instead of a softmax, a log and a product.

    Returns
    -------
    McStats
        Mean softmax and mean per-pass entropy (bits), float32 on the images' device.

    Notes
    -----
    Runs under ``torch.no_grad``. Only running sums are kept (``B x C x H x W`` plus ``B x H x W``),
    never the ``T`` passes. On CUDA the network runs under autocast; softmax and entropy are
    computed in float32. Every module's train/eval flag is restored afterwards, also on error.
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if mode == "head" and not (callable(getattr(model, "encode", None))
                               and callable(getattr(model, "decode", None))):
        raise TypeError(f"mode='head' needs a model with encode() and decode(), "
                        f"got {type(model).__name__}")
    _check_images(images)

    batch, _, height, width = images.shape
    autocast = torch.autocast(device_type=images.device.type, enabled=images.device.type == "cuda")
    decode: Callable[[Any], torch.Tensor] = model.decode if mode == "head" else model
    with kept_modes(model), torch.no_grad():
        enable_mc_dropout(model)
        with autocast:
            inputs = model.encode(images) if mode == "head" else images
        if seed is None:
            parts = [_passes(decode, inputs, n_samples, autocast, (batch, height, width),
                             expected_entropy)]
        else:  # one image at a time: its own mask sequence, and tensors that stay in cache
            parts = []
            for b in range(batch):
                with shared_masks(seed, images.device):
                    parts.append(_passes(decode, _take(inputs, b), n_samples, autocast,
                                         (1, height, width), expected_entropy))
    sum_probs = torch.cat([p for p, _ in parts]) if len(parts) > 1 else parts[0][0]
    if not expected_entropy:
        return McStats(sum_probs / n_samples, None)
    sum_nats = torch.cat([n for _, n in parts]) if len(parts) > 1 else parts[0][1]
    return McStats(sum_probs / n_samples, sum_nats / (n_samples * _LN2))


def _passes(decode: Callable[[Any], torch.Tensor], inputs: Any, n_samples: int, autocast: Any,
            expected: tuple[int, int, int],
            with_entropy: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Sums of the softmax and (``with_entropy``) of its entropy in nats over ``n_samples``
    stochastic passes."""
    sum_probs = sum_nats = None
    for _ in range(n_samples):
        with autocast:
            logits = decode(inputs)
        if logits.ndim != 4 or logits.shape[:1] + logits.shape[2:] != expected:
            raise ValueError(f"model must return logits B x C x {expected[1]} x {expected[2]} "
                             f"with B = {expected[0]}, got {tuple(logits.shape)}")
        if with_entropy:
            probs, nats = _softmax_and_entropy(logits)
        else:
            probs, nats = _softmax(logits.float()), None
        if sum_probs is None:
            sum_probs, sum_nats = probs, nats
        else:
            sum_probs += probs
            if with_entropy:
                sum_nats += nats
    return sum_probs, sum_nats


def _take(value: Any, index: int) -> Any:
    """Image ``index`` of a batch of features (tensors, nested in tuples and named tuples)."""
    if isinstance(value, torch.Tensor):
        return value[index:index + 1]
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)._make(_take(v, index) for v in value)
    if isinstance(value, (tuple, list)):
        return type(value)(_take(v, index) for v in value)
    return value


def _softmax(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over dim 1 from in-place steps: on CPUs a fifth to a third cheaper than
    ``torch.softmax`` over the class dimension of ``B x C x H x W`` (strided), same values up to
    rounding."""
    e = (logits - logits.amax(dim=1, keepdim=True)).exp_()
    return e.div_(e.sum(dim=1, keepdim=True))


def _softmax_and_entropy(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 softmax over dim 1 and its entropy in nats, from one ``log_softmax``.

    Cheaper than ``entropy(softmax(logits))`` and exact for underflowing probabilities; the
    clamp keeps ``0 * log 0 = 0`` for logits of ``-inf``.
    """
    log_probs = torch.log_softmax(logits.float(), dim=1).clamp_(min=torch.finfo(torch.float32).min)
    probs = log_probs.exp()
    return probs, -(probs * log_probs).sum(dim=1)


def _check_stats(stats: McStats) -> None:
    if not isinstance(stats, McStats):
        raise TypeError(f"stats must be McStats, got {type(stats).__name__}")
    probs, expected = stats
    if probs.ndim != 4 or (expected is not None
                           and expected.shape != probs.shape[:1] + probs.shape[2:]):
        raise ValueError(f"McStats must hold mean_probs B x C x H x W and expected_entropy "
                         f"B x H x W, got {tuple(probs.shape)} and {tuple(expected.shape)}")


def _needs_expected(stats: McStats, name: str) -> None:
    _check_stats(stats)
    if stats.expected_entropy is None:
        raise ValueError(f"the {name} heuristic needs the mean per-pass entropy: run mc_dropout "
                         f"with expected_entropy=True")


def predictive_entropy(stats: McStats) -> torch.Tensor:
    """Entropy of the mean softmax, ``H[mean p]``, in bits (``B x H x W``).

    Total uncertainty: high when the averaged prediction is spread over classes.
    """
    _check_stats(stats)
    return entropy(stats.mean_probs, dim=1)


def bald(stats: McStats) -> torch.Tensor:
    """BALD mutual information ``H[mean p] - E[H[p]]`` in bits (``B x H x W``).

    Epistemic uncertainty: zero when every pass predicts the same distribution, high when the
    passes disagree. Tiny negative values from rounding are clamped to 0.
    """
    _needs_expected(stats, "bald")
    return (entropy(stats.mean_probs, dim=1) - stats.expected_entropy).clamp_min(0.0)


def margin(stats: McStats) -> torch.Tensor:
    """Margin uncertainty ``1 - (p1 - p2)`` of the mean softmax (``B x H x W``, in ``[0, 1]``).

    ``p1`` and ``p2`` are the largest and second-largest mean class probabilities; the value is
    flipped so that, like the other heuristics, higher means more uncertain. Not in bits.
    Needs at least two classes.
    """
    _check_stats(stats)
    if stats.mean_probs.shape[1] < 2:
        raise ValueError(f"margin needs at least 2 classes, got {stats.mean_probs.shape[1]}")
    top2 = stats.mean_probs.topk(2, dim=1).values
    return 1.0 - (top2[:, 0] - top2[:, 1])


def authors_bald(stats: McStats) -> torch.Tensor:
    """``H[mean p] + E[H[p]]`` in bits (``B x H x W``): the DBSAL authors' "BALD" mode.

    Kept to reproduce the paper's code. It is not BALD: it adds the mean per-pass entropy
    instead of subtracting it, so it mostly ranks like predictive entropy (aleatoric plus
    epistemic) rather than measuring disagreement between passes. Range ``[0, 2 log2 C]``.
    """
    _needs_expected(stats, "authors")
    return entropy(stats.mean_probs, dim=1) + stats.expected_entropy


#: Pixel heuristics by name, for :func:`pixel_uncertainty` and settings.
HEURISTICS: dict[str, Callable[[McStats], torch.Tensor]] = {
    "entropy": predictive_entropy,
    "bald": bald,
    "margin": margin,
    "authors": authors_bald,
}


#: Heuristics that need :attr:`McStats.expected_entropy`.
NEEDS_EXPECTED_ENTROPY = frozenset({"bald", "authors"})


def pixel_uncertainty(stats: McStats, method: str = defaults.HEURISTIC) -> torch.Tensor:
    """Apply the heuristic named ``method`` (a key of :data:`HEURISTICS`) to ``stats``.

    Returns
    -------
    torch.Tensor
        ``B x H x W``, higher = more uncertain.
    """
    if method not in HEURISTICS:
        raise ValueError(f"unknown uncertainty method {method!r}; expected one of "
                         f"{sorted(HEURISTICS)}")
    return HEURISTICS[method](stats)
