"""SLIC superpixels (OpenCV ``cv2.ximgproc``) and an on-disk cache of label maps.

Superpixels are computed once per image and setting and never change between active-learning
steps, so :class:`SuperpixelCache` stores them on disk keyed by the image content and the
settings.

The image is converted to CIELAB as float32 (L in [0, 100], a/b in about [-128, 127]), the
colour space and scale ``skimage.segmentation.slic`` uses, so ``ruler`` is on the same scale as
skimage's ``compactness`` (the method uses compactness 10).

OpenCV's implementation crashes the process (segfault) for some inputs; :func:`slic` avoids the
cases found by testing: region sizes are capped at the image's short side (a third of it for
MSLIC), images smaller than 2x2 are refused, and MSLIC, whose OpenCV implementation has known
invalid memory accesses, is refused for images smaller than 36x36.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import tempfile
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from . import defaults
from .caches import LruCache
from .checks import is_int, is_number
from .files import atomic_write

logger = logging.getLogger(__name__)

__all__ = ["ALGORITHMS", "SlicParams", "mean_colours", "slic", "SuperpixelCache"]

#: Algorithm names accepted by :class:`SlicParams`, mapped to OpenCV's constants.
ALGORITHMS = {
    "SLICO": cv2.ximgproc.SLICO,
    "SLIC": cv2.ximgproc.SLIC,
    "MSLIC": cv2.ximgproc.MSLIC,
}

#: Smallest image side MSLIC is run on (OpenCV's MSLIC crashed on smaller random images).
MSLIC_MIN_SIDE = 36

# Bumped when the label maps produced for the same settings change (invalidates caches).
_FORMAT_VERSION = 1


@dataclass(frozen=True)
class SlicParams:
    """Settings of one SLIC segmentation.

    Parameters
    ----------
    algorithm : {"SLIC", "SLICO", "MSLIC"}
        OpenCV variant (``cv2.ximgproc.SLIC`` / ``SLICO`` / ``MSLIC``).
    n_segments : int or None
        Target number of superpixels; the region size is ``round(sqrt(H * W / n_segments))``,
        at least 2. Ignored when ``region_size`` is set.
    region_size : int or None
        Average superpixel side in pixels (>= 2); overrides ``n_segments``.
    ruler : float
        Compactness (> 0); larger gives more regular superpixels.
    iterations : int
        Number of SLIC iterations (>= 1).
    min_element_size : int
        Percent of the nominal superpixel area below which fragments are merged into a
        neighbour by ``enforceLabelConnectivity``; 0 disables connectivity enforcement.
    max_pixels : int
        Larger images are segmented at a reduced size of about this many pixels (the label
        map is then smaller than the image; callers scale it up, nearest neighbour), which
        bounds time and memory for very large images.
    """

    algorithm: str = defaults.SLIC_ALGORITHM
    n_segments: int | None = defaults.N_SEGMENTS
    region_size: int | None = None
    ruler: float = defaults.COMPACTNESS
    iterations: int = 10
    min_element_size: int = 25
    max_pixels: int = 2048 * 2048

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(
                f"algorithm must be one of {sorted(ALGORITHMS)}, got {self.algorithm!r}"
            )
        if self.n_segments is not None and (not is_int(self.n_segments) or self.n_segments < 1):
            raise ValueError(f"n_segments must be a positive int or None, got {self.n_segments!r}")
        if self.region_size is not None and (not is_int(self.region_size) or self.region_size < 2):
            raise ValueError(f"region_size must be an int >= 2 or None, got {self.region_size!r}")
        if self.n_segments is None and self.region_size is None:
            raise ValueError("one of n_segments and region_size must be set")
        if (
            not is_number(self.ruler)
            or not math.isfinite(self.ruler)
            or self.ruler <= 0
        ):
            raise ValueError(f"ruler must be a finite number > 0, got {self.ruler!r}")
        if not is_int(self.iterations) or self.iterations < 1:
            raise ValueError(f"iterations must be an int >= 1, got {self.iterations!r}")
        if not is_int(self.max_pixels) or self.max_pixels < 4:
            raise ValueError(f"max_pixels must be an int >= 4, got {self.max_pixels!r}")
        if not is_int(self.min_element_size) or not 0 <= self.min_element_size <= 100:
            raise ValueError(
                f"min_element_size must be an int percentage in [0, 100], "
                f"got {self.min_element_size!r}"
            )

    def key(self) -> str:
        """Return a stable string that identifies these settings (used in cache keys)."""
        region = "none" if self.region_size is None else str(int(self.region_size))
        segments = "none" if self.n_segments is None else str(int(self.n_segments))
        return (
            f"v{_FORMAT_VERSION}-{self.algorithm}-n{segments}-r{region}-ruler{float(self.ruler)!r}"
            f"-it{int(self.iterations)}-min{int(self.min_element_size)}-max{int(self.max_pixels)}"
        )

    def working_size(self, height: int, width: int) -> tuple[int, int]:
        """The size an image of ``height x width`` is segmented at (itself, or smaller)."""
        if height * width <= self.max_pixels:
            return height, width
        scale = math.sqrt(self.max_pixels / (height * width))
        return max(2, int(height * scale)), max(2, int(width * scale))

    def region_size_for(self, height: int, width: int) -> int:
        """Return the region size used for an image of ``height`` x ``width`` pixels.

        The nominal size (``region_size``, else derived from ``n_segments``) is capped at the
        short side of the image (a third of it for MSLIC), which OpenCV needs to not crash.
        """
        if self.region_size is not None:
            size = int(self.region_size)
        else:
            size = max(2, round(math.sqrt(height * width / self.n_segments)))
        cap = min(height, width) // 3 if self.algorithm == "MSLIC" else min(height, width)
        return max(2, min(size, cap))


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """Validate a uint8 RGB (HxWx3) or grayscale (HxW) image; return a contiguous HxWx3 copy."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must have dtype uint8, got {image.dtype}")
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    elif image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be HxWx3 RGB or HxW grayscale, got shape {image.shape}")
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise ValueError(f"image must be at least 2x2 pixels, got shape {image.shape}")
    return np.ascontiguousarray(image)


def _relabel(labels: np.ndarray) -> np.ndarray:
    """Map the ids of a non-negative label map to 0..n-1, keeping their order (int32)."""
    present = np.zeros(int(labels.max()) + 1, dtype=bool)
    present[labels] = True
    if present.all():
        return labels.astype(np.int32, copy=False)
    lut = (np.cumsum(present) - 1).astype(np.int32)
    return lut[labels]


def slic(image: np.ndarray, params: SlicParams = SlicParams()) -> np.ndarray:
    """Segment an image into SLIC superpixels with OpenCV.

    Parameters
    ----------
    image : numpy.ndarray
        ``uint8`` RGB image ``H x W x 3`` or grayscale ``H x W`` (at least 2x2).
    params : SlicParams
        Algorithm settings.

    Returns
    -------
    numpy.ndarray
        ``int32`` label map with ids exactly ``0..n-1``, ``H x W`` or, for an image of more
        than ``params.max_pixels`` pixels, :meth:`SlicParams.working_size`.
    """
    if not isinstance(params, SlicParams):
        raise TypeError(f"params must be a SlicParams, got {type(params).__name__}")
    rgb = _as_rgb(image)
    height, width = params.working_size(*rgb.shape[:2])
    if (height, width) != rgb.shape[:2]:
        rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
    if params.algorithm == "MSLIC" and min(height, width) < MSLIC_MIN_SIDE:
        raise ValueError(
            f"MSLIC needs images of at least {MSLIC_MIN_SIDE}x{MSLIC_MIN_SIDE} pixels "
            f"(OpenCV's MSLIC crashes on smaller ones), got {height}x{width}; use SLICO"
        )
    lab = cv2.cvtColor(rgb.astype(np.float32) * np.float32(1 / 255), cv2.COLOR_RGB2LAB)
    engine = cv2.ximgproc.createSuperpixelSLIC(
        lab,
        algorithm=ALGORITHMS[params.algorithm],
        region_size=params.region_size_for(height, width),
        ruler=float(params.ruler),
    )
    engine.iterate(int(params.iterations))
    if params.min_element_size > 0:
        engine.enforceLabelConnectivity(int(params.min_element_size))
    return _relabel(engine.getLabels())


def mean_colours(image: np.ndarray, superpixels: np.ndarray) -> np.ndarray:
    """The mean CIELAB colour of each superpixel (ids ``0..n-1``, as :func:`slic` gives them),
    ``n x 3`` on OpenCV's 8-bit scale; the image is shrunk to the label map's size first when
    they differ (the superpixels of a large image, at :meth:`SlicParams.working_size`)."""
    rgb = _as_rgb(image)
    if rgb.shape[:2] != superpixels.shape:
        rgb = cv2.resize(rgb, superpixels.shape[::-1], interpolation=cv2.INTER_AREA)
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float64)
    ids = np.asarray(superpixels).ravel()
    n = int(ids.max()) + 1
    sizes = np.maximum(np.bincount(ids, minlength=n), 1)
    return np.stack([np.bincount(ids, lab[:, c], n) for c in range(3)], axis=1) / sizes[:, None]


class SuperpixelCache:
    """On-disk cache of :func:`slic` label maps, one compressed ``.npz`` file per image.

    The key is the sha256 of the image bytes, shape and dtype and of ``params.key()``. Files are
    written atomically (:func:`~dbsal_backend.engine.files.atomic_write`), so concurrent
    readers and writers (a background worker and request threads) never see partial files; an
    unreadable or inconsistent file is recomputed and overwritten. A small in-memory LRU keeps
    the most recent label maps; every call returns a fresh array the caller may modify.

    Parameters
    ----------
    root : str or os.PathLike
        Cache folder (created if missing).
    params : SlicParams
        Segmentation settings used for every image.
    memory_items : int
        Number of label maps kept in memory (0 disables the in-memory layer).

    Attributes
    ----------
    hits, misses : int
        Number of :meth:`get` calls answered from the cache / computed.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        params: SlicParams = SlicParams(),
        memory_items: int = 4,
    ) -> None:
        if not isinstance(params, SlicParams):
            raise TypeError(f"params must be a SlicParams, got {type(params).__name__}")
        if not is_int(memory_items) or memory_items < 0:
            raise ValueError(f"memory_items must be an int >= 0, got {memory_items!r}")
        self.root = Path(root)
        self.problem: str | None = None
        self._memory: LruCache[np.ndarray] = LruCache(int(memory_items))
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            tempfile.NamedTemporaryFile(dir=self.root).close()
        except OSError as exc:
            self._disable(exc)
        self.params = params
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()  # the counters

    @property
    def memory_items(self) -> int:
        """Number of label maps kept in memory."""
        return self._memory.limit

    def key(self, image: np.ndarray) -> str:
        """Return the cache key (hex sha256) of ``image`` under this cache's settings."""
        _as_rgb(image)
        digest = hashlib.sha256()
        digest.update(np.ascontiguousarray(image).tobytes())
        digest.update(f"|{image.shape}|{image.dtype.str}|{self.params.key()}".encode())
        return digest.hexdigest()

    def path(self, image: np.ndarray) -> Path:
        """Return the file that holds (or will hold) the label map of ``image``."""
        return self.root / f"{self.key(image)}.npz"

    def get(self, image: np.ndarray) -> np.ndarray:
        """Return the superpixel label map of ``image``, computing and storing it if needed."""
        key = self.key(image)
        cached = self._memory.get(key)
        if cached is not None:
            with self._lock:
                self.hits += 1
            return cached.copy()
        path = self.root / f"{key}.npz"
        labels = self._load(path, self.params.working_size(*image.shape[:2]))
        hit = labels is not None
        if not hit:
            labels = slic(image, self.params)
            self._store(path, labels)
        with self._lock:
            if hit:
                self.hits += 1
            else:
                self.misses += 1
        self._memory.put(key, labels.copy())
        return labels

    @staticmethod
    def _load(path: Path, shape: tuple[int, int]) -> np.ndarray | None:
        """Read a cached label map; ``None`` when missing, unreadable or inconsistent."""
        try:
            with np.load(path, allow_pickle=False) as data:
                labels = data["labels"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None
        if labels.shape != tuple(shape) or not np.issubdtype(labels.dtype, np.integer):
            return None
        if labels.min() < 0 or not np.all(np.bincount(labels.ravel())):
            return None
        return labels.astype(np.int32, copy=False)

    def _disable(self, exc: OSError) -> None:
        """Keep label maps in memory only (the folder cannot be written)."""
        self.problem = (f"superpixel cache {self.root} is not writable ({exc.strerror or exc}); "
                        f"superpixels are kept in memory only")
        logger.warning(self.problem)
        self._memory.limit = max(self._memory.limit, 64)

    def _store(self, path: Path, labels: np.ndarray) -> None:
        """Write ``labels`` to ``path`` atomically (uint16 on disk when the ids fit)."""
        if self.problem:
            return
        stored = labels.astype(np.uint16) if labels.max() < 2**16 else labels
        try:
            with atomic_write(path) as handle:
                np.savez_compressed(handle, labels=stored)
        except OSError as exc:
            self._disable(exc)
