"""Reading segmentation data sets and a torch Dataset with augmentation.

Images are ``uint8`` RGB arrays ``H x W x 3``; label maps are ``uint8`` arrays ``H x W`` holding
class indices, with :data:`~dbsal_backend.engine.constants.IGNORE_INDEX` (255) for unlabeled pixels.

On-disk layout read by :func:`load_split`::

    root/train/images/<stem>.jpg|.png|...    root/train/labels/<stem>.png
    root/val/images/...                      root/val/labels/...
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset

from .checks import is_int, is_number
from .constants import IGNORE_INDEX

__all__ = [
    "IMAGE_EXTENSIONS",
    "SegmentationDataset",
    "fit_side",
    "load_split",
    "read_image",
    "read_label",
    "resize_nearest",
]

#: File extensions (lower case) read as images by :func:`load_split`.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

_SINGLE_CHANNEL_MODES = ("1", "L", "P", "I", "I;16", "I;16B", "I;16L")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as ``uint8`` RGB ``H x W x 3``.

    The EXIF orientation is applied (the array is what a viewer shows); grey, palette and
    RGBA images are converted to RGB (alpha is dropped).
    """
    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image)
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def read_label(path: str | os.PathLike) -> np.ndarray:
    """Read a single-channel index PNG as an integer array ``H x W``.

    Pixel values are class indices (a palette PNG gives its indices, not colours). 8-bit files
    give ``uint8``, 16/32-bit ones ``int32``. No EXIF orientation is applied.

    Raises
    ------
    ValueError
        If the file has more than one channel (e.g. an RGB colour-coded label image).
    """
    with Image.open(path) as label:
        if label.mode not in _SINGLE_CHANNEL_MODES:
            raise ValueError(f"{path}: expected a single-channel index image (mode L, P or I), "
                             f"got mode {label.mode} with {len(label.getbands())} channels")
        array = np.asarray(label)
    return array.astype(np.uint8 if array.dtype in (np.bool_, np.uint8) else np.int32)


def fit_side(image: np.ndarray, max_side: int) -> np.ndarray:
    """``image`` shrunk (area interpolation) so that its longer side is at most ``max_side``;
    the image itself when it already fits. This is the model's working resolution for training
    and scoring; superpixels and regions stay at the full size."""
    height, width = image.shape[:2]
    scale = max_side / max(height, width)
    if scale >= 1:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def resize_nearest(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of a 2-D map (labels, predicted classes) to ``height x width``."""
    if array.shape[:2] == (height, width):
        return array
    return cv2.resize(array, (width, height), interpolation=cv2.INTER_NEAREST)


def _resize(array: np.ndarray, size: tuple[int, int], resample: int) -> np.ndarray:
    """Resize an ``H x W`` or ``H x W x 3`` uint8 array to ``size = (H', W')`` with PIL."""
    return np.asarray(Image.fromarray(array).resize((size[1], size[0]), resample))


def _to_label_map(label: np.ndarray, ignore_value: int | None, path: Path) -> np.ndarray:
    label = label.astype(np.int64)
    if ignore_value is not None:
        label[label == ignore_value] = IGNORE_INDEX
    if label.size and (label.min() < 0 or label.max() > IGNORE_INDEX):
        raise ValueError(f"{path}: label values must be class indices < {IGNORE_INDEX} or "
                         f"{IGNORE_INDEX} (ignore), got values up to {label.max()}")
    return label.astype(np.uint8)


def load_split(root: str | os.PathLike, split: str, ignore_value: int | None = None,
               scale: float = 1.0) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """Load all image/label pairs of one split into memory.

    Parameters
    ----------
    root : path
        Data set root holding ``<split>/images`` and ``<split>/labels``.
    split : str
        Sub-directory name, e.g. ``"train"`` or ``"val"``.
    ignore_value : int, optional
        Label value that means "no label" in this data set (11 for CamVid void); remapped to
        ``IGNORE_INDEX``. Pixels already equal to ``IGNORE_INDEX`` stay ignored.
    scale : float
        Resize factor (> 0); images are resized with PIL bilinear (anti-aliased when shrinking),
        labels with nearest neighbour. Output size is ``round(H * scale) x round(W * scale)``.

    Returns
    -------
    images : list of numpy.ndarray
        ``uint8`` RGB ``H x W x 3``.
    labels : list of numpy.ndarray
        ``uint8`` ``H x W``, class indices or ``IGNORE_INDEX``.
    names : list of str
        File stems, sorted; images and labels are paired by stem.
    """
    if not is_number(scale) or not scale > 0:
        raise ValueError(f"scale must be a number > 0, got {scale!r}")
    image_dir = Path(root) / split / "images"
    label_dir = Path(root) / split / "labels"
    for directory in (image_dir, label_dir):
        if not directory.is_dir():
            raise FileNotFoundError(f"directory {directory} does not exist (expected "
                                    f"<root>/<split>/images and <root>/<split>/labels)")
    image_paths: dict[str, Path] = {}
    for path in sorted(image_dir.iterdir()):
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        if path.stem in image_paths:
            raise ValueError(f"two images share the stem {path.stem!r} in {image_dir}: "
                             f"{image_paths[path.stem].name} and {path.name}")
        image_paths[path.stem] = path
    if not image_paths:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {image_dir}")
    missing = [stem for stem in image_paths if not (label_dir / f"{stem}.png").is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} image(s) in {image_dir} have no label "
                                f"{label_dir}/<stem>.png, e.g. {missing[:5]}")

    images, labels, names = [], [], []
    for stem, image_path in image_paths.items():
        label_path = label_dir / f"{stem}.png"
        image = read_image(image_path)
        label = _to_label_map(read_label(label_path), ignore_value, label_path)
        if image.shape[:2] != label.shape:
            raise ValueError(f"size mismatch for {stem!r}: image {image.shape[1]}x{image.shape[0]}"
                             f" vs label {label.shape[1]}x{label.shape[0]} (width x height)")
        if scale != 1.0:
            size = (max(1, round(label.shape[0] * scale)), max(1, round(label.shape[1] * scale)))
            image = _resize(image, size, Image.BILINEAR)
            label = _resize(label, size, Image.NEAREST)
        images.append(image)
        labels.append(label)
        names.append(stem)
    return images, labels, names


def _check_pair(index: int, image: object, label: object) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 \
            or image.shape[2] != 3:
        raise ValueError(f"image {index} must be a uint8 numpy array H x W x 3, got "
                         f"{getattr(image, 'dtype', type(image).__name__)} "
                         f"{getattr(image, 'shape', '')}")
    if not isinstance(label, np.ndarray) or label.ndim != 2 \
            or not np.issubdtype(label.dtype, np.integer):
        raise ValueError(f"label {index} must be an integer numpy array H x W, got "
                         f"{getattr(label, 'dtype', type(label).__name__)} "
                         f"{getattr(label, 'shape', '')}")
    if image.shape[:2] != label.shape:
        raise ValueError(f"image {index} is {image.shape[0]}x{image.shape[1]} but its label is "
                         f"{label.shape[0]}x{label.shape[1]} (height x width)")


class SegmentationDataset(Dataset):
    """A torch Dataset over in-memory image/label arrays, with optional augmentation.

    Item ``i`` is ``(image, label)``: a float tensor ``3 x H x W`` in ``[0, 1]`` and a long
    tensor ``H x W`` (class indices or ``IGNORE_INDEX``). Augmentation, in this order:

    1. horizontal flip with probability 0.5 (``hflip``);
    2. resize by a factor drawn uniformly from ``scale_range`` (image bilinear, label nearest);
    3. pad (image with 0, label with ``IGNORE_INDEX``, at the bottom/right) to at least the output
       size, then take a random crop of the output size.

    The output size is ``crop_size``, or the image's own size when ``crop_size`` is None (then
    scaling zooms in or out at a fixed size). Batching needs equal sizes: without ``crop_size``,
    all images must share one size (otherwise use batch size 1, as evaluation does).

    Randomness is drawn from ``numpy.random.default_rng((seed, epoch, index))``, so an item is
    reproducible whatever the DataLoader order or worker count; call :meth:`set_epoch` each epoch
    to draw new augmentations (``training.fit`` does).

    Parameters
    ----------
    images : sequence of numpy.ndarray
        ``uint8`` RGB ``H x W x 3``.
    labels : sequence of numpy.ndarray
        Integer ``H x W`` label maps, same sizes as the images.
    crop_size : int or (int, int), optional
        Output ``(height, width)`` (an int means square).
    scale_range : (float, float), optional
        ``(low, high)`` with ``0 < low <= high``; no scaling when None.
    hflip : bool
        Random horizontal flips.
    seed : int
        Seed of the augmentation.
    """

    def __init__(self, images: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                 crop_size: int | tuple[int, int] | None = None,
                 scale_range: tuple[float, float] | None = None, hflip: bool = False,
                 seed: int = 0):
        if len(images) != len(labels):
            raise ValueError(f"got {len(images)} images but {len(labels)} labels")
        for index, (image, label) in enumerate(zip(images, labels)):
            _check_pair(index, image, label)
        if crop_size is not None:
            crop_size = (crop_size, crop_size) if isinstance(crop_size, int) else tuple(crop_size)
            if len(crop_size) != 2 or not all(
                    is_int(c) and c > 0 for c in crop_size):
                raise ValueError(f"crop_size must be a positive int or (height, width), "
                                 f"got {crop_size!r}")
        if scale_range is not None:
            scale_range = tuple(scale_range)
            if len(scale_range) != 2 or not 0 < scale_range[0] <= scale_range[1]:
                raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, "
                                 f"got {scale_range!r}")
        if not isinstance(hflip, bool):
            raise TypeError(f"hflip must be a bool, got {type(hflip).__name__}")
        if not is_int(seed) or seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {seed!r}")
        self.images = list(images)
        self.labels = list(labels)
        self.crop_size = crop_size
        self.scale_range = scale_range
        self.hflip = hflip
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of ``epoch`` (an int >= 0)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        index %= len(self)
        image, label = self.images[index], self.labels[index].astype(np.int64)
        rng = np.random.default_rng((self.seed, self.epoch, index))
        if self.hflip and rng.random() < 0.5:
            image, label = image[:, ::-1], label[:, ::-1]
        out_size = self.crop_size or label.shape
        if self.scale_range is not None:
            factor = rng.uniform(*self.scale_range)
            size = (max(1, round(label.shape[0] * factor)), max(1, round(label.shape[1] * factor)))
            image = _resize(np.ascontiguousarray(image), size, Image.BILINEAR)
            label = _resize(label.astype(np.int32), size, Image.NEAREST)
        if label.shape != tuple(out_size):
            image, label = self._pad_and_crop(image, label, out_size, rng)
        image_t = torch.from_numpy(np.ascontiguousarray(image).transpose(2, 0, 1).copy())
        return image_t.float().div_(255.0), torch.from_numpy(label.astype(np.int64))

    @staticmethod
    def _pad_and_crop(image: np.ndarray, label: np.ndarray, size: tuple[int, int],
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        pad_h, pad_w = max(0, size[0] - label.shape[0]), max(0, size[1] - label.shape[1])
        if pad_h or pad_w:
            image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), constant_values=0)
            label = np.pad(label, ((0, pad_h), (0, pad_w)), constant_values=IGNORE_INDEX)
        top = rng.integers(0, label.shape[0] - size[0] + 1)
        left = rng.integers(0, label.shape[1] - size[1] + 1)
        return (image[top:top + size[0], left:left + size[1]],
                label[top:top + size[0], left:left + size[1]])
