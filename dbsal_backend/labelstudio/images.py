"""Task images: where they may come from, how they are downloaded, decoded and cached.

The rules (an image URL comes from task data, which people other than the operator write):

- Only the Label Studio origin and the origins in ``DBSAL_ALLOWED_IMAGE_ORIGINS`` are fetched;
  server paths (``/data/upload/...``) are resolved against Label Studio, and cloud-storage URIs
  (``s3://``, ``gs://``, ``azure-blob://``...) through Label Studio's own resolver
  (``/tasks/<id>/resolve/?fileuri=...``), which streams the bytes or redirects to a presigned
  URL. Anything else is refused.
- Redirects are followed by hand, at most :data:`MAX_REDIRECTS`, and every hop's origin is
  checked; the API key goes to the Label Studio origin only.
- Downloads are streamed with a byte cap (``DBSAL_MAX_IMAGE_BYTES``) and an overall deadline
  (``DBSAL_IMAGE_TIMEOUT``), so a huge or trickling answer costs bounded memory and time.
- The pixel count is read from the header and checked (``DBSAL_MAX_IMAGE_PIXELS``) before the
  image is decoded.
- Downloaded bytes are cached on disk by URL; when the cache folder cannot be written, a small
  in-memory cache takes over (and :attr:`ImageFetcher.cache_problem` says why).
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import os
import tempfile
import threading
import time
import itertools
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import SplitResult, urljoin, urlsplit

import httpx
import numpy as np
from PIL import Image, ImageOps

from ..engine.caches import LruCache
from ..engine.checks import is_int
from ..engine.files import atomic_write_bytes

__all__ = ["CLOUD_SCHEMES", "ImageFetchError", "ImageFetcher", "decode_image", "origin",
           "prefetch"]

logger = logging.getLogger(__name__)

#: Redirect hops followed at most.
MAX_REDIRECTS = 5
#: URI schemes resolved through Label Studio's storage resolver.
CLOUD_SCHEMES = ("s3", "gs", "azure-blob", "azure-spi")
_MEMORY_ITEMS = 16
T = TypeVar("T")


class ImageFetchError(RuntimeError):
    """A task image could not be resolved, downloaded or decoded (the task is skipped)."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


def _split(url: str) -> SplitResult:
    """``urlsplit(url)`` with its port checked; :class:`ImageFetchError` for a malformed URL
    (a task's data is written by people, so a bad URL must skip the task, not stop the step)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError as exc:
        raise ImageFetchError(f"{url[:200]!r} is not a valid URL ({exc})") from None
    return parts


def origin(url: str) -> str:
    """``scheme://host:port`` of a URL (default ports filled in), lower case.

    Raises
    ------
    ImageFetchError
        For a malformed URL (an invalid port or IPv6 address).
    """
    parts = _split(url)
    scheme = parts.scheme.lower()
    port = parts.port or {"http": 80, "https": 443}.get(scheme)
    return f"{scheme}://{(parts.hostname or '').lower()}:{port}"


def decode_image(data: bytes, source: str, max_pixels: int) -> np.ndarray:
    """Decode image bytes to ``uint8`` RGB ``H x W x 3`` with the EXIF orientation applied.

    The size is read from the header first: an image of more than ``max_pixels`` pixels is
    refused before any pixel is decoded.

    Raises
    ------
    ImageFetchError
        For bytes Pillow cannot read, or an image that is too large.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise ImageFetchError(
                    f"{source} is {width}x{height} = {width * height} pixels, more than "
                    f"DBSAL_MAX_IMAGE_PIXELS={max_pixels}; raise it to accept such images")
            # one decoded copy besides the array (a 9000 x 9000 image: 243 MB each): transposed
            # in place, converted only when it is not RGB already
            image.load()
            ImageOps.exif_transpose(image, in_place=True)
            if image.mode != "RGB":
                image = image.convert("RGB")
            return np.asarray(image, dtype=np.uint8)
    except ImageFetchError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError,
            MemoryError) as exc:
        raise ImageFetchError(f"{source} is not a readable image ({exc})") from None


class ImageFetcher:
    """Resolves, downloads, caches and decodes task images under the rules above.

    Parameters
    ----------
    label_studio_url : str
        Label Studio's base URL; its origin gets the API key.
    auth_header : callable
        ``auth_header(renew)`` returns the ``Authorization`` header for Label Studio
        (``renew=True`` after a 401, to exchange a personal access token again).
    allowed_origins : list of str
        Other origins images may come from (no key is sent there).
    cache_dir : path, optional
        Where downloaded bytes are kept; None: memory only.
    max_bytes, max_pixels, timeout :
        Limits per image: download size, decoded pixels, seconds for the whole download.
    """

    def __init__(self, label_studio_url: str, auth_header: Callable[[bool], dict[str, str]],
                 allowed_origins: list[str] = (), cache_dir: str | os.PathLike | None = None,
                 max_bytes: int = 64 * 2**20, max_pixels: int = 50_000_000,
                 timeout: float = 30.0) -> None:
        self.base = label_studio_url.rstrip("/")
        self.label_studio = origin(self.base)
        self.allowed = {origin(o) for o in allowed_origins} | {self.label_studio}
        self.auth_header = auth_header
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self.timeout = timeout
        self.cache_dir: Path | None = None
        self.cache_problem: str | None = None
        if cache_dir is not None:
            try:
                Path(cache_dir).mkdir(parents=True, exist_ok=True)
                probe = tempfile.NamedTemporaryFile(dir=cache_dir, delete=True)
                probe.close()
                self.cache_dir = Path(cache_dir)
            except OSError as exc:
                self.cache_problem = f"image cache {cache_dir} is not writable ({exc}); " \
                                     f"images are cached in memory only"
                logger.warning(self.cache_problem)
        self._memory: LruCache[bytes] = LruCache(_MEMORY_ITEMS)
        # No cookies are kept: one set by Label Studio would go to other origins on its host.
        self._http = httpx.Client(follow_redirects=False, trust_env=False,
                                  timeout=httpx.Timeout(min(timeout, 10.0)),
                                  cookies=CookieJar(DefaultCookiePolicy(allowed_domains=[])))

    def close(self) -> None:
        self._http.close()

    # -- resolving ------------------------------------------------------------------------------
    def url(self, task: Mapping[str, Any], data_key: str) -> str:
        """The absolute URL of a task's image (cloud URIs through Label Studio's resolver)."""
        data = task.get("data") if isinstance(task, Mapping) else None
        value = data.get(data_key) if isinstance(data, Mapping) else None
        task_id = task.get("id") if isinstance(task, Mapping) else None
        if not isinstance(value, str) or not value.strip():
            raise ImageFetchError(f"task {task_id} has no image URL in data[{data_key!r}]")
        value = value.strip()
        scheme = _split(value).scheme.lower()
        if scheme in ("http", "https"):
            return value
        if value.startswith("/") and not value.startswith("//"):
            return self.base + value
        if scheme in CLOUD_SCHEMES:
            if not is_int(task_id):
                raise ImageFetchError(f"cannot resolve {value[:200]!r} without a task id")
            uri = base64.urlsafe_b64encode(value.encode()).decode()
            return f"{self.base}/tasks/{task_id}/resolve/?fileuri={uri}"
        raise ImageFetchError(
            f"task {task_id}: cannot download {value[:200]!r}; supported are Label Studio paths "
            f"(/data/upload/...), cloud-storage URIs ({', '.join(CLOUD_SCHEMES)}) and http(s) "
            f"URLs of allowed origins")

    # -- fetching -------------------------------------------------------------------------------
    def load(self, task: Mapping[str, Any], data_key: str) -> np.ndarray:
        """Download (or read from the cache) and decode a task's image.

        Raises
        ------
        ImageFetchError
            If the URL is missing, unsupported or not allowed, the download fails or is too
            large or slow, or the bytes are not an image within the pixel limit.
        """
        url = self.url(task, data_key)
        key = hashlib.sha256(url.encode()).hexdigest()
        source = f"the image of task {task.get('id')} ({url[:200]})"
        data = self._cached(key)
        if data is not None:
            try:
                return decode_image(data, source, self.max_pixels)
            except ImageFetchError:
                self._forget(key)  # a damaged cache file: download it again
        data = self.download(url)
        self._keep(key, data)
        try:
            return decode_image(data, source, self.max_pixels)
        except ImageFetchError:
            self._forget(key)
            raise

    def download(self, url: str) -> bytes:
        """GET ``url`` under the rules of the module docstring."""
        deadline = time.monotonic() + self.timeout
        renewed = False
        hops = 0
        while True:
            where = origin(url)
            if where not in self.allowed:
                raise ImageFetchError(
                    f"refusing to download {url[:200]}: its origin {where} is neither Label "
                    f"Studio's ({self.label_studio}) nor in DBSAL_ALLOWED_IMAGE_ORIGINS", 403)
            headers = self.auth_header(renewed) if where == self.label_studio else {}
            status, location, body = self._get(url, headers, deadline)
            if status == 401 and where == self.label_studio and not renewed:
                renewed = True
                continue
            if status in (301, 302, 303, 307, 308) and location:
                hops += 1
                if hops > MAX_REDIRECTS:
                    raise ImageFetchError(f"{url[:200]}: more than {MAX_REDIRECTS} redirects")
                try:
                    url = urljoin(url, location)
                except ValueError as exc:
                    raise ImageFetchError(f"{url[:200]} redirects to an invalid URL "
                                          f"{location[:200]!r} ({exc})") from None
                continue
            if status != 200:
                raise ImageFetchError(f"downloading {url[:200]} answered HTTP {status}", status)
            return body

    def _get(self, url: str, headers: dict[str, str], deadline: float) -> tuple[int, str, bytes]:
        """One request within the deadline: a helper thread does it, and is left behind when a
        server dribbles even its headers (its socket reads time out on their own later)."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise ImageFetchError(self._too_slow(url))
        outcome: dict[str, Any] = {}

        def request() -> None:
            try:
                outcome["value"] = self._request(url, headers, deadline)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                outcome["error"] = exc

        worker = threading.Thread(target=request, daemon=True, name="dbsal-download")
        worker.start()
        worker.join(left)
        if worker.is_alive():
            raise ImageFetchError(self._too_slow(url))
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    def _too_slow(self, url: str) -> str:
        return f"downloading {url[:200]} took longer than DBSAL_IMAGE_TIMEOUT={self.timeout:g} s"

    def _request(self, url: str, headers: dict[str, str],
                 deadline: float) -> tuple[int, str, bytes]:
        """Status, Location and the body (read only for 200, streamed under the caps)."""
        left = max(deadline - time.monotonic(), 0.01)
        try:
            with self._http.stream("GET", url, headers=headers,
                                   timeout=httpx.Timeout(min(left, 10.0))) as response:
                if response.status_code != 200:
                    return response.status_code, response.headers.get("location", ""), b""
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > self.max_bytes:
                    raise ImageFetchError(self._too_large(url))
                chunks, size = [], 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise ImageFetchError(self._too_large(url))
                    if time.monotonic() > deadline:
                        raise ImageFetchError(self._too_slow(url))
                    chunks.append(chunk)
                return 200, "", b"".join(chunks)
        except httpx.HTTPError as exc:
            raise ImageFetchError(f"downloading {url[:200]} failed "
                                  f"({type(exc).__name__}: {exc})") from None

    def _too_large(self, url: str) -> str:
        return (f"{url[:200]} is larger than DBSAL_MAX_IMAGE_BYTES={self.max_bytes}; raise it to "
                f"accept such images")

    # -- cache ----------------------------------------------------------------------------------
    def _cached(self, key: str) -> bytes | None:
        data = self._memory.get(key)
        if data is not None:
            return data
        if self.cache_dir is not None:
            try:
                return (self.cache_dir / key).read_bytes()
            except OSError:
                return None
        return None

    def _keep(self, key: str, data: bytes) -> None:
        if self.cache_dir is not None:
            try:
                atomic_write_bytes(self.cache_dir / key, data)
                return
            except OSError as exc:
                self.cache_problem = f"image cache {self.cache_dir} failed ({exc}); images " \
                                     f"are cached in memory only"
                logger.warning(self.cache_problem)
                self.cache_dir = None
        self._memory.put(key, data)

    def _forget(self, key: str) -> None:
        self._memory.pop(key)
        if self.cache_dir is not None:
            (self.cache_dir / key).unlink(missing_ok=True)


def prefetch(items: Iterable[T], load: Callable[[T], np.ndarray], workers: int,
             on_error: Callable[[T, Exception], None]) -> Iterator[tuple[T, np.ndarray]]:
    """``(item, load(item))`` in order, with up to ``workers`` loads running ahead in threads
    (0: one at a time, in this thread). Items whose load raises :class:`ImageFetchError` are
    passed to ``on_error`` and left out. Memory holds at most ``workers + 1`` images."""
    if workers < 1:
        for item in items:
            try:
                yield item, load(item)
            except ImageFetchError as exc:
                on_error(item, exc)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="dbsal-fetch") as pool:
        pending: deque = deque()
        iterator = iter(items)
        for item in itertools.islice(iterator, workers):
            pending.append((item, pool.submit(load, item)))
        while pending:
            item, future = pending.popleft()
            for more in itertools.islice(iterator, 1):
                pending.append((more, pool.submit(load, more)))
            try:
                yield item, future.result()
            except ImageFetchError as exc:
                on_error(item, exc)
