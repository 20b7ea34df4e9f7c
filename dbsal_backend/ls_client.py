"""The backend's view of a Label Studio server, over label-studio-sdk 2.1.2.

:class:`LabelStudioClient` lists tasks and annotations, downloads task images (with the API key,
cached on disk), pushes and prunes predictions, and keeps one Data Manager tab per project that
orders the unlabeled tasks by prediction score (the labeling queue).

Both kinds of API key work: a legacy token (sent as ``Authorization: Token <key>``) and a personal
access token, a JWT refresh token that is exchanged at ``POST /api/token/refresh/`` for short-lived
access tokens (sent as ``Authorization: Bearer <access>``; renewed before they expire and on a
401). The key is never logged and never sent to hosts other than the Label Studio server.

Every network or API failure raises :class:`LabelStudioError` (:class:`ImageFetchError` for
images) with what was attempted and what the server answered; payload keys that are missing are
treated as absent, never as a crash.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
import numpy as np
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError
from PIL import Image, ImageOps

from .ls_annotations import select_annotations

__all__ = [
    "QUEUE_FILTERS",
    "QUEUE_ORDERING",
    "ImageFetchError",
    "decode_image",
    "LabelStudioClient",
    "LabelStudioError",
]

logger = logging.getLogger(__name__)

#: Data Manager ordering of the queue tab: highest prediction score first. Label Studio counts
#: only predictions whose ``model_version`` equals the project's model version.
QUEUE_ORDERING = ["-tasks:predictions_score"]
#: Data Manager filter of the queue tab: tasks without a (non-cancelled) annotation.
QUEUE_FILTERS = {
    "conjunction": "and",
    "items": [
        {
            "filter": "filter:tasks:total_annotations",
            "operator": "equal",
            "type": "Number",
            "value": 0,
        }
    ],
}
_REFRESH_MARGIN_S = 30.0


class LabelStudioError(RuntimeError):
    """A Label Studio request failed; ``status_code`` is the HTTP status, if any."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class ImageFetchError(LabelStudioError):
    """A task image could not be resolved, downloaded or decoded (the caller skips the task)."""


def _as_dict(obj: Any) -> dict[str, Any]:
    """An SDK model (or a dict) as a plain JSON-like dict of the fields the server sent."""
    if isinstance(obj, Mapping):
        return dict(obj)
    return obj.model_dump(mode="json", by_alias=True, exclude_unset=True)


def _reason(exc: ApiError) -> str:
    body = exc.body
    if isinstance(body, Mapping):
        text = str(body.get("detail") or body)
        if body.get("validation_errors"):
            text += f" {body['validation_errors']}"
    else:
        text = str(body)
    return f"HTTP {exc.status_code}: {text[:500]}"


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def _project_id(project: Any) -> int:
    if isinstance(project, bool) or not isinstance(project, (int, np.integer)) or project < 1:
        raise ValueError(f"project must be a positive int id, got {project!r}")
    return int(project)


def _refresh_token_expiry(api_key: str) -> float | None:
    """Expiry (epoch s) of a JWT refresh token, or None for a legacy token."""
    try:
        claims = jwt.decode(api_key, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return None
    if claims.get("token_type") != "refresh":
        return None
    return float(claims.get("exp", 0))


def decode_image(data: bytes, source: str) -> np.ndarray:
    """Decode image bytes to ``uint8`` RGB ``H x W x 3``, applying the EXIF orientation.

    Raises
    ------
    ImageFetchError
        If the bytes are not an image Pillow can read.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            image = ImageOps.exif_transpose(image)
            return np.array(image.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageFetchError(f"{source} is not a readable image ({exc})") from None


class LabelStudioClient:
    """A small client for the calls the backend makes to Label Studio.

    Parameters
    ----------
    url : str
        Label Studio base URL, e.g. ``http://127.0.0.1:8080``.
    api_key : str
        Legacy token or personal access token (passed explicitly; the environment is not read).
    cache_dir : str or Path
        Directory for downloaded image bytes (created if missing).
    timeout : float
        Seconds per HTTP request.
    """

    def __init__(
        self, url: str, api_key: str, cache_dir: str | os.PathLike, timeout: float = 30.0
    ) -> None:
        if not isinstance(url, str) or _origin(url)[0] not in ("http", "https"):
            raise ValueError(f"url must be an http(s) URL of Label Studio, got {url!r}")
        if not isinstance(api_key, str) or not api_key.strip():
            raise ValueError("api_key must be a non-empty string (a legacy token or a PAT)")
        self.url = url.rstrip("/")
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._api_key = api_key.strip()
        refresh_expiry = _refresh_token_expiry(self._api_key)
        if refresh_expiry is not None and refresh_expiry < time.time():
            raise LabelStudioError("the personal access token has expired; create a new one", 401)
        self._uses_pat = refresh_expiry is not None
        self._access: str | None = None
        self._access_expiry = 0.0
        self._lock = threading.Lock()
        self._http = httpx.Client(timeout=timeout, follow_redirects=True)
        self._sdk_http = httpx.Client(timeout=timeout, follow_redirects=True)
        with self._api("setting up the label-studio-sdk client"):
            self.sdk = LabelStudio(
                base_url=self.url,
                api_key=self._api_key,
                httpx_client=self._sdk_http,
                timeout=timeout,
            )

    def __repr__(self) -> str:
        kind = "personal access token" if self._uses_pat else "legacy token"
        return f"LabelStudioClient({self.url!r}, <{kind}>, cache_dir={str(self.cache_dir)!r})"

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()
        self._sdk_http.close()

    def __enter__(self) -> LabelStudioClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def _api(self, what: str) -> Iterator[None]:
        """Turn SDK and transport errors into :class:`LabelStudioError`."""
        try:
            yield
        except ApiError as exc:
            raise LabelStudioError(
                f"{what} failed: Label Studio answered {_reason(exc)}", exc.status_code
            ) from None
        except httpx.HTTPError as exc:
            raise LabelStudioError(
                f"{what} failed: cannot reach Label Studio at {self.url} "
                f"({type(exc).__name__}: {exc})"
            ) from exc

    # ------------------------------------------------------------------ projects

    def get_project(self, project: int) -> dict[str, Any]:
        """The project as a dict (``label_config``, ``model_version``, ``task_number``, ...)."""
        project = _project_id(project)
        with self._api(f"reading project {project}"):
            return _as_dict(self.sdk.projects.get(id=project))

    def project_model_version(self, project: int) -> str:
        """The project's model version (``""`` when none is set)."""
        return self.get_project(project).get("model_version") or ""

    def set_project_model_version(self, project: int, model_version: str) -> None:
        """Set the project's model version.

        Label Studio accepts only the title of a connected ML backend or a version that some of
        the project's predictions carry, so push predictions first.
        """
        project = _project_id(project)
        if not isinstance(model_version, str) or not model_version:
            raise ValueError(f"model_version must be a non-empty str, got {model_version!r}")
        with self._api(f"setting project {project}'s model version to {model_version!r}"):
            self.sdk.projects.update(id=project, model_version=model_version)

    # ------------------------------------------------------------------ tasks

    def list_tasks(
        self,
        project: int,
        include: str | None = None,
        view: int | None = None,
        page_size: int = 100,
        request_options: dict[str, Any] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Stream the project's tasks as dicts, page by page, with annotations and predictions.

        Parameters
        ----------
        project : int
            Project id.
        include : str, optional
            Comma-separated task fields to return (e.g. ``"id,total_annotations"``); default
            all. Annotations listed this way are bare ids.
        view : int, optional
            Data Manager tab whose filters and ordering apply.
        page_size : int
            Tasks per request.
        request_options : dict, optional
            SDK request options (e.g. ``{"max_retries": 0}``).
        """
        project = _project_id(project)
        with self._api(f"listing the tasks of project {project}"):
            pager = self.sdk.tasks.list(
                project=project,
                fields="all",
                include=include,
                view=view,
                page_size=page_size,
                request_options=request_options,
            )
            for task in pager:
                yield _as_dict(task)

    def unlabeled_task_ids(self, project: int) -> list[int]:
        """Ids of the tasks with no (non-cancelled) annotation, in Label Studio's order.

        A task whose listing lacks ``total_annotations`` counts as unlabeled.
        """
        return [
            task["id"]
            for task in self.list_tasks(project, include="id,total_annotations")
            if "id" in task and not task.get("total_annotations")
        ]

    def annotations(self, project: int) -> dict[int, dict[str, Any]]:
        """``{task id: newest non-cancelled annotation}`` (see :func:`select_annotations`).

        Reads the annotations of each task that has any (one request per labeled task): a task
        listing restricted with ``include`` returns annotations as bare ids, and a full listing
        carries every prediction too.
        """
        labeled = [
            task["id"]
            for task in self.list_tasks(project, include="id,total_annotations")
            if "id" in task and task.get("total_annotations")
        ]
        by_task = {}
        for task_id in labeled:
            with self._api(f"reading the annotations of task {task_id}"):
                by_task[task_id] = [_as_dict(a) for a in self.sdk.annotations.list(id=task_id)]
        return select_annotations(by_task)

    # ------------------------------------------------------------------ images

    def image_url(self, task: Mapping[str, Any], data_key: str) -> str:
        """Absolute URL of a task's image: server paths are resolved against the server URL."""
        data = task.get("data") if isinstance(task, Mapping) else None
        value = data.get(data_key) if isinstance(data, Mapping) else None
        task_id = task.get("id") if isinstance(task, Mapping) else None
        if not isinstance(value, str) or not value.strip():
            raise ImageFetchError(f"task {task_id} has no image URL in data[{data_key!r}]")
        value = value.strip()
        if _origin(value)[0] in ("http", "https"):
            return value
        if value.startswith("/"):
            return self.url + value
        raise ImageFetchError(
            f"task {task_id}: cannot download {value[:200]!r}; supported are server paths "
            "(/data/upload/..., /data/local-files/?d=...) and http(s) URLs"
        )

    def load_image(self, task: Mapping[str, Any], data_key: str) -> np.ndarray:
        """Download (or read from the cache) and decode a task's image.

        Parameters
        ----------
        task : mapping
            Task dict with ``data``.
        data_key : str
            Key of the image URL in ``task["data"]`` (``LabelConfig.image_value``).

        Returns
        -------
        numpy.ndarray
            ``uint8`` RGB ``H x W x 3``, EXIF orientation applied.

        Raises
        ------
        ImageFetchError
            If the URL is missing or unsupported, the download fails, or the bytes are not an
            image.
        """
        url = self.image_url(task, data_key)
        path = self.cache_dir / hashlib.sha256(url.encode()).hexdigest()
        if path.exists():
            data = path.read_bytes()
        else:
            data = self._download(url)
            with tempfile.NamedTemporaryFile(dir=self.cache_dir, delete=False) as tmp:
                tmp.write(data)
            os.replace(tmp.name, path)
        try:
            return decode_image(data, f"the image of task {task.get('id')} ({url})")
        except ImageFetchError:
            path.unlink(missing_ok=True)
            raise

    def _auth_header(self, renew: bool = False) -> dict[str, str]:
        if not self._uses_pat:
            return {"Authorization": f"Token {self._api_key}"}
        with self._lock:
            if renew or self._access is None or time.time() > self._access_expiry:
                with self._api("exchanging the personal access token for an access token"):
                    access = self.sdk.tokens.refresh(refresh=self._api_key).access
                try:
                    claims = jwt.decode(access, options={"verify_signature": False})
                    expiry = float(claims.get("exp", 0)) - _REFRESH_MARGIN_S
                except jwt.InvalidTokenError:
                    expiry = 0.0  # not a JWT: renew before every download
                self._access, self._access_expiry = access, expiry
            return {"Authorization": f"Bearer {self._access}"}

    def _download(self, url: str) -> bytes:
        """GET ``url``; the key goes only to the Label Studio server itself."""
        own_server = _origin(url) == _origin(self.url)
        for attempt in range(2):
            headers = self._auth_header(renew=attempt > 0) if own_server else {}
            try:
                response = self._http.get(url, headers=headers)
            except httpx.HTTPError as exc:
                raise ImageFetchError(
                    f"downloading {url} failed ({type(exc).__name__}: {exc})"
                ) from exc
            if not (response.status_code == 401 and own_server and self._uses_pat):
                break
        if response.status_code != 200:
            is_json = response.headers.get("content-type", "").startswith("application/json")
            raise ImageFetchError(
                f"downloading {url} answered HTTP {response.status_code}"
                + (f": {response.text[:300]}" if is_json else ""),
                response.status_code,
            )
        return response.content

    # ------------------------------------------------------------------ predictions

    def push_predictions(
        self, project: int, predictions: Sequence[Mapping[str, Any]], batch: int = 100
    ) -> int:
        """Store predictions, ``batch`` per request; returns how many were stored.

        Each prediction is ``{"task": id, "result": [...], "score": float in [0, 1],
        "model_version": str}``. Label Studio silently drops predictions whose score is outside
        ``[0, 1]`` or whose results do not fit the label config; that raises here.
        """
        project = _project_id(project)
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch must be a positive int, got {batch!r}")
        items = [dict(p) for p in predictions]
        for k, item in enumerate(items):
            task, score = item.get("task"), item.get("score")
            if isinstance(task, bool) or not isinstance(task, int):
                raise ValueError(f"prediction {k} needs an int 'task', got {task!r}")
            if not isinstance(item.get("result"), list):
                raise ValueError(f"prediction {k} needs a list 'result'")
            if not isinstance(item.get("model_version"), str) or not item["model_version"]:
                raise ValueError(f"prediction {k} needs a non-empty str 'model_version'")
            if score is not None and not (isinstance(score, (int, float)) and 0 <= score <= 1):
                raise ValueError(f"prediction {k} score must be in [0, 1], got {score!r}")
        stored = 0
        for start in range(0, len(items), batch):
            chunk = items[start : start + batch]
            with self._api(f"pushing {len(chunk)} predictions to project {project}"):
                created = self.sdk.projects.import_predictions(id=project, request=chunk).created
            stored += created or 0
            if created != len(chunk):
                raise LabelStudioError(
                    f"Label Studio stored {created} of {len(chunk)} predictions "
                    f"(items {start}..{start + len(chunk) - 1}); it drops results whose "
                    "from_name/to_name/labels do not fit the label config"
                )
        return stored

    def delete_predictions(
        self, project: int, model_version: str | None = None, keep_latest: bool = False
    ) -> int:
        """Delete predictions of a project; returns how many were deleted.

        Parameters
        ----------
        project : int
            Project id.
        model_version : str, optional
            Only predictions with this model version (default: all).
        keep_latest : bool
            Keep the newest (highest id) of those predictions on each task.
        """
        project = _project_id(project)
        with self._api(f"listing the predictions of project {project}"):
            found = [_as_dict(p) for p in self.sdk.predictions.list(project=project)]
        found = [
            p
            for p in found
            if "id" in p and (model_version is None or p.get("model_version") == model_version)
        ]
        if keep_latest:
            newest: dict[Any, int] = {}
            for p in found:
                newest[p.get("task")] = max(p["id"], newest.get(p.get("task"), p["id"]))
            found = [p for p in found if p["id"] != newest[p.get("task")]]
        deleted = 0
        for p in found:
            try:
                with self._api(f"deleting prediction {p['id']}"):
                    self.sdk.predictions.delete(id=p["id"])
                deleted += 1
            except LabelStudioError as exc:
                if exc.status_code != 404:  # 404: deleted meanwhile
                    raise
        return deleted

    # ------------------------------------------------------------------ queue

    def ensure_queue_view(self, project: int, title: str = "DBSAL queue") -> int:
        """Create or update the project's queue tab; returns its id.

        The tab (found by ``title``) shows tasks without annotations, highest prediction score
        first. Its other settings (columns, ...) are kept; extra tabs with the same title, from
        earlier runs, are deleted.
        """
        project = _project_id(project)
        if not isinstance(title, str) or not title:
            raise ValueError(f"title must be a non-empty str, got {title!r}")
        with self._api(f"setting up the queue tab of project {project}"):
            views = sorted(
                (_as_dict(v) for v in self.sdk.views.list(project=project)),
                key=lambda v: v.get("id", 0),
            )
            mine = [v for v in views if (v.get("data") or {}).get("title") == title and "id" in v]
            wanted = {"title": title, "ordering": QUEUE_ORDERING, "filters": QUEUE_FILTERS}
            if not mine:
                view = self.sdk.views.create(project=project, data=wanted)
                logger.info("created queue tab %s of project %s", view.id, project)
                return int(view.id)
            keep = mine[0]
            data = {**(keep.get("data") or {}), **wanted}
            if data != keep.get("data"):
                self.sdk.views.update(id=str(keep["id"]), project=project, data=data)
            for extra in mine[1:]:
                self.sdk.views.delete(id=str(extra["id"]))
            return int(keep["id"])

    def queue(self, project: int, view_id: int) -> list[int]:
        """Task ids of a tab, in its order (``GET /api/tasks/?view=V``); ``[]`` for no tasks.

        Label Studio answers 500 when a project without tasks is listed by prediction score;
        that case gives ``[]``.
        """
        try:
            tasks = self.list_tasks(
                project, include="id", view=view_id, request_options={"max_retries": 0}
            )
            return [task["id"] for task in tasks if "id" in task]
        except LabelStudioError as exc:
            if exc.status_code == 500 and not any(True for _ in self.list_tasks(project, "id")):
                return []
            raise
