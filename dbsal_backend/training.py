"""Training loop, evaluation and checkpoints for the segmentation models.

- :func:`train`: Adam + (optionally class-weighted) cross-entropy that ignores
  ``IGNORE_INDEX``, ReduceLROnPlateau, early stopping on validation mIoU with the best weights
  restored, AMP on CUDA. Fine-tuning is calling it again on an already trained model.
- :func:`evaluate`, :func:`confusion_matrix`, :func:`iou_per_class`, :func:`miou`: scoring.
- :func:`predict_probs`: softmax of one ``uint8`` image.
- :func:`save_checkpoint` / :func:`load_checkpoint`: atomic, self-describing checkpoints.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .constants import IGNORE_INDEX
from .data import SegmentationDataset
from .networks import ARCHITECTURES, build_model, pick_device

__all__ = [
    "CheckpointMismatch",
    "EpochStats",
    "TrainConfig",
    "TrainResult",
    "class_weights",
    "confusion_matrix",
    "evaluate",
    "iou_per_class",
    "load_checkpoint",
    "make_train_dataset",
    "miou",
    "predict_probs",
    "save_checkpoint",
    "train",
]

logger = logging.getLogger(__name__)

_CHECKPOINT_FORMAT = "dbsal-checkpoint"
_CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class TrainConfig:
    """Settings of :func:`train` (defaults follow the DBSAL authors: Adam, lr 1e-4).

    Attributes
    ----------
    epochs : int
        Maximum number of epochs.
    batch_size : int
        Mini-batch size.
    lr, weight_decay : float
        Adam learning rate and weight decay.
    class_weighted : bool
        Weight the loss by :func:`class_weights` of the training labels.
    patience : int
        Stop after this many epochs without a better validation mIoU (only with a validation set).
    lr_patience : int
        Multiply the learning rate by 0.1 after this many epochs without improvement (of the
        validation mIoU, or of the training loss without a validation set).
    crop_size, scale_range, hflip :
        Augmentation used by :func:`make_train_dataset` (see ``data.SegmentationDataset``).
    seed : int
        Seeds torch (dropout), the shuffling and the augmentation.
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (see ``networks.pick_device``).
    amp : bool
        Mixed precision (float16 autocast and gradient scaling); only used on CUDA.
    progress : bool
        Show a tqdm progress bar over the epochs.
    log_every : int
        Log a line (``logging.INFO``) every this many epochs; the last epoch is always logged.
    """

    epochs: int = 50
    batch_size: int = 4
    lr: float = 1e-4
    weight_decay: float = 0.0
    class_weighted: bool = False
    patience: int = 10
    lr_patience: int = 5
    crop_size: int | tuple[int, int] | None = None
    scale_range: tuple[float, float] | None = (0.75, 1.25)
    hflip: bool = True
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    progress: bool = True
    log_every: int = 1

    def __post_init__(self) -> None:
        for name, minimum in (("epochs", 1), ("batch_size", 1), ("patience", 1),
                              ("lr_patience", 1), ("seed", 0), ("log_every", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"TrainConfig.{name} must be an int >= {minimum}, got {value!r}")
        for name in ("lr", "weight_decay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or value < 0 or (name == "lr" and value == 0):
                raise ValueError(f"TrainConfig.{name} must be a finite number "
                                 f"{'> 0' if name == 'lr' else '>= 0'}, got {value!r}")
        for name in ("class_weighted", "hflip", "amp", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"TrainConfig.{name} must be a bool, "
                                f"got {type(getattr(self, name)).__name__}")
        if not isinstance(self.device, str):
            raise TypeError(f"TrainConfig.device must be a str, got {type(self.device).__name__}")
        # The augmentation settings are checked by the dataset they configure.
        SegmentationDataset([], [], crop_size=self.crop_size, scale_range=self.scale_range)


@dataclass(frozen=True)
class EpochStats:
    """One epoch of :func:`train`: mean training loss, validation mIoU (NaN without a
    validation set), learning rate used, wall time in seconds and batches skipped because
    every pixel was ignored."""

    epoch: int
    loss: float
    val_miou: float
    lr: float
    seconds: float
    skipped_batches: int


@dataclass
class TrainResult:
    """Outcome of :func:`train`.

    Attributes
    ----------
    history : list of EpochStats
        One entry per epoch run.
    best_epoch : int
        Epoch (1-based) whose weights the model holds: the best validation mIoU, or the last
        epoch without a validation set (0 if no epoch had a finite validation mIoU; the model
        then keeps its final weights).
    best_miou : float
        Validation mIoU of ``best_epoch`` (NaN without a validation set).
    stopped_early : bool
        Early stopping ended the run before ``config.epochs``.
    stopped_by_callback : bool
        The callback asked to stop.
    """

    history: list[EpochStats] = field(default_factory=list)
    best_epoch: int = 0
    best_miou: float = math.nan
    stopped_early: bool = False
    stopped_by_callback: bool = False


def make_train_dataset(images: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                       config: TrainConfig) -> SegmentationDataset:
    """A :class:`~dbsal_backend.data.SegmentationDataset` with the augmentation of ``config``."""
    return SegmentationDataset(images, labels, crop_size=config.crop_size,
                               scale_range=config.scale_range, hflip=config.hflip,
                               seed=config.seed)


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


def _model_device(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _resolve_device(model: nn.Module, device: torch.device | str | None) -> torch.device:
    if device is None:
        return _model_device(model)
    if isinstance(device, torch.device):
        return device
    return pick_device(device)


def evaluate(model: nn.Module, dataset: Dataset, n_classes: int,
             device: torch.device | str | None = None, batch_size: int = 1) -> dict:
    """Score ``model`` on a dataset of ``(image, label)`` pairs.

    Parameters
    ----------
    model : torch.nn.Module
        Segmentation model (moved to ``device``; its train/eval mode is restored afterwards).
    dataset : torch.utils.data.Dataset
        Items ``(float 3 x H x W in [0, 1], long H x W)``, e.g. a ``SegmentationDataset``
        without augmentation. Use ``batch_size=1`` when image sizes differ.
    n_classes : int
        Number of classes.
    device : torch.device or str, optional
        Where to run (``"auto"`` allowed); default the model's device.
    batch_size : int
        Images per forward pass.

    Returns
    -------
    dict
        ``miou`` (float), ``iou`` (float64 per class, NaN where a class is absent from both
        truth and prediction), ``pixel_accuracy`` (float, over labeled pixels) and
        ``confusion`` (int64 ``n_classes x n_classes``).
    """
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 1:
        raise ValueError(f"n_classes must be an int >= 1, got {n_classes!r}")
    device = _resolve_device(model, device)
    model.to(device)
    was_training = model.training
    model.eval()
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    try:
        with torch.inference_mode():
            for images, labels in DataLoader(dataset, batch_size=batch_size, shuffle=False):
                pred = model(images.to(device)).argmax(dim=1).cpu().numpy()
                confusion += confusion_matrix(pred, labels.numpy(), n_classes)
    finally:
        model.train(was_training)
    total = confusion.sum()
    return {
        "miou": miou(confusion),
        "iou": iou_per_class(confusion),
        "pixel_accuracy": float(np.trace(confusion) / total) if total else math.nan,
        "confusion": confusion,
    }


def predict_probs(model: nn.Module, image: np.ndarray,
                  device: torch.device | str | None = None) -> np.ndarray:
    """Softmax probabilities of one image.

    Parameters
    ----------
    model : torch.nn.Module
        Segmentation model; run in eval mode (its mode is restored afterwards).
    image : numpy.ndarray
        ``uint8`` RGB ``H x W x 3``.
    device : torch.device or str, optional
        Where to run; default the model's device.

    Returns
    -------
    numpy.ndarray
        float32 ``C x H x W``.
    """
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 \
            or image.shape[2] != 3:
        raise ValueError(f"image must be a uint8 numpy array H x W x 3, got "
                         f"{getattr(image, 'dtype', type(image).__name__)} "
                         f"{getattr(image, 'shape', '')}")
    device = _resolve_device(model, device)
    model.to(device)
    was_training = model.training
    model.eval()
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float().div(255.0)
    try:
        with torch.inference_mode():
            probs = torch.softmax(model(x.to(device)).float(), dim=1)[0]
    finally:
        model.train(was_training)
    return probs.cpu().numpy()


def _dataset_weights(dataset: Dataset, n_classes: int) -> torch.Tensor:
    """:func:`class_weights` of every label the dataset yields (one pass, no batching)."""
    return class_weights([dataset[i][1].numpy() for i in range(len(dataset))], n_classes)


def train(model: nn.Module, train_ds: Dataset, val_ds: Dataset | None = None,
          config: TrainConfig | None = None,
          callback: Callable[[EpochStats], bool | None] | None = None) -> TrainResult:
    """Train (or fine-tune) a segmentation model.

    Adam on cross-entropy with ``ignore_index=IGNORE_INDEX`` (class-weighted if
    ``config.class_weighted``); a batch whose labels are all ignored is skipped (no gradient,
    no NaN). With ``val_ds``, the model is scored after every epoch; the learning rate drops
    x0.1 after ``lr_patience`` epochs without a better mIoU, training stops after ``patience``
    such epochs, and the weights of the best epoch are restored at the end. Without ``val_ds``
    the scheduler follows the training loss and the final weights are kept.

    Deterministic on CPU for a given ``config.seed`` and initial weights.

    Parameters
    ----------
    model : torch.nn.Module
        Model returning logits ``B x C x H x W``; moved to ``config.device`` and left there, in
        eval mode.
    train_ds, val_ds : torch.utils.data.Dataset
        Items ``(float 3 x H x W in [0, 1], long H x W)``. A dataset with ``set_epoch`` (like
        ``SegmentationDataset``) gets the epoch number before each epoch. Training items must
        share one size when ``batch_size > 1``; validation runs with batch size 1.
    config : TrainConfig, optional
        Settings; defaults to ``TrainConfig()``.
    callback : callable, optional
        Called with the :class:`EpochStats` of every epoch; returning True stops training.

    Returns
    -------
    TrainResult
    """
    config = config or TrainConfig()
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if len(train_ds) == 0:
        raise ValueError("train_ds is empty")
    device = pick_device(config.device)
    torch.manual_seed(config.seed)
    model.to(device)
    use_amp = config.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr,
                                 weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max" if val_ds is not None else "min", factor=0.1,
        patience=config.lr_patience - 1, threshold=0.0)  # torch waits patience + 1 epochs
    loader = DataLoader(train_ds, batch_size=config.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(config.seed),
                        pin_memory=device.type == "cuda")
    criterion: nn.Module | None = None  # built on the first batch, when n_classes is known
    n_classes = 0
    result = TrainResult()
    best_state: dict[str, torch.Tensor] | None = None
    best_miou, epochs_since_best = -math.inf, 0
    bar = tqdm(range(1, config.epochs + 1), desc="train", unit="epoch",
               disable=not config.progress)
    for epoch in bar:
        start = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        if hasattr(train_ds, "set_epoch"):
            train_ds.set_epoch(epoch - 1)
        model.train()
        total_loss, n_steps, skipped = 0.0, 0, 0
        for images, labels in loader:
            if not (labels != IGNORE_INDEX).any():
                skipped += 1
                continue
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                logits = model(images)
            if criterion is None:
                n_classes = logits.shape[1]
                weight = (_dataset_weights(train_ds, n_classes).to(device)
                          if config.class_weighted else None)
                criterion = nn.CrossEntropyLoss(weight=weight, ignore_index=IGNORE_INDEX)
            loss = criterion(logits.float(), labels)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            total_loss += float(loss.detach())
            n_steps += 1
        mean_loss = total_loss / n_steps if n_steps else math.nan
        val_miou = (evaluate(model, val_ds, n_classes, device)["miou"]
                    if val_ds is not None and n_classes else math.nan)
        stats = EpochStats(epoch, mean_loss, val_miou, lr, time.perf_counter() - start, skipped)
        result.history.append(stats)
        bar.set_postfix(loss=f"{mean_loss:.4f}", miou=f"{val_miou:.4f}", lr=f"{lr:.1e}")
        if epoch % config.log_every == 0 or epoch == config.epochs:
            logger.info("epoch %d/%d loss %.4f val mIoU %.4f lr %.1e (%.1fs, %d skipped)",
                        epoch, config.epochs, mean_loss, val_miou, lr, stats.seconds, skipped)

        if val_ds is not None:
            if val_miou > best_miou:  # False for NaN
                best_miou, result.best_epoch, result.best_miou = val_miou, epoch, val_miou
                best_state = {k: v.detach().to("cpu", copy=True)
                              for k, v in model.state_dict().items()}
                epochs_since_best = 0
            else:
                epochs_since_best += 1
            if not math.isnan(val_miou):
                scheduler.step(val_miou)
        else:
            result.best_epoch = epoch
            if not math.isnan(mean_loss):
                scheduler.step(mean_loss)

        if callback is not None and callback(stats):
            result.stopped_by_callback = True
            logger.info("training stopped by the callback after epoch %d", epoch)
            break
        if val_ds is not None and epochs_since_best >= config.patience and epoch < config.epochs:
            result.stopped_early = True
            logger.info("early stopping after epoch %d: no better val mIoU for %d epochs "
                        "(best %.4f at epoch %d)", epoch, config.patience, result.best_miou,
                        result.best_epoch)
            break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return result



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
