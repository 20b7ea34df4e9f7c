"""The backend's view of a Label Studio server, over label-studio-sdk 2.1.2.

:class:`LabelStudioClient` reads projects, tasks and annotations, lists the ML backends and
webhooks of a project, pushes and deletes predictions and sets the project's sampling and model
version. Images are fetched by :mod:`dbsal_backend.labelstudio.images` with :meth:`LabelStudioClient.
auth_header`.

Both kinds of API key work: a legacy token (sent as ``Authorization: Token <key>``) and a personal
access token, a JWT refresh token that is exchanged at ``POST /api/token/refresh/`` for short-lived
access tokens (sent as ``Authorization: Bearer <access>``; renewed before they expire and on a
401). The key is never logged and never sent to hosts other than the Label Studio server.

Every network or API failure raises :class:`LabelStudioError` with what was attempted and what
the server answered; payload keys that are missing are treated as absent, never as a crash.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import httpx
import jwt
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError

from ..engine.checks import check_id, is_int
from .annotations import select_annotations

__all__ = ["LabelStudioClient", "LabelStudioError", "UNCERTAINTY_SAMPLING"]

logger = logging.getLogger(__name__)

#: The project sampling under which "Label All Tasks" serves the least confident task first.
UNCERTAINTY_SAMPLING = "Uncertainty sampling"
_REFRESH_MARGIN_S = 30.0


class LabelStudioError(RuntimeError):
    """A Label Studio request failed; ``status_code`` is the HTTP status, if any."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


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


def _refresh_token_expiry(api_key: str) -> float | None:
    """Expiry (epoch s) of a JWT refresh token, or None for a legacy token."""
    try:
        claims = jwt.decode(api_key, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return None
    if claims.get("token_type") != "refresh":
        return None
    return float(claims.get("exp", 0))


class LabelStudioClient:
    """A small client for the calls the backend makes to Label Studio.

    Parameters
    ----------
    url : str
        Label Studio's base URL.
    api_key : str
        A legacy token or a personal access token.
    timeout : float
        Seconds per HTTP request.
    """

    def __init__(self, url: str, api_key: str, timeout: float = 30.0) -> None:
        if not isinstance(api_key, str) or not api_key.strip():
            raise LabelStudioError("LABEL_STUDIO_API_KEY is not set: the backend cannot read "
                                   "tasks or write predictions. Set it to a legacy token or a "
                                   "personal access token (Label Studio: Account & Settings)")
        self.url = url.rstrip("/")
        self._api_key = api_key.strip()
        refresh_expiry = _refresh_token_expiry(self._api_key)
        if refresh_expiry is not None and refresh_expiry < time.time():
            raise LabelStudioError("the personal access token has expired; create a new one", 401)
        self._uses_pat = refresh_expiry is not None
        self._access: str | None = None
        self._access_expiry = 0.0
        self._lock = threading.Lock()
        self._sdk_http = httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False)
        with self._api("setting up the label-studio-sdk client"):
            self.sdk = LabelStudio(base_url=self.url, api_key=self._api_key,
                                   httpx_client=self._sdk_http, timeout=timeout)

    def __repr__(self) -> str:
        kind = "personal access token" if self._uses_pat else "legacy token"
        return f"LabelStudioClient({self.url!r}, <{kind}>)"

    def close(self) -> None:
        """Close the HTTP connections."""
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

    def auth_header(self, renew: bool = False) -> dict[str, str]:
        """``Authorization`` for requests to Label Studio outside the SDK (image downloads)."""
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

    def _raw(self, method: str, path: str, what: str, **kwargs: Any) -> Any:
        """A request the SDK has no method for; returns the decoded JSON (or None)."""
        with self._api(what):
            response = self.sdk._client_wrapper.httpx_client.request(path, method=method,
                                                                     **kwargs)
            if response.status_code >= 400:
                raise LabelStudioError(f"{what} failed: Label Studio answered HTTP "
                                       f"{response.status_code}: {response.text[:300]}",
                                       response.status_code)
            return response.json() if response.content else None

    # ------------------------------------------------------------------ projects

    def get_project(self, project: int) -> dict[str, Any]:
        """The project as a dict (``label_config``, ``model_version``, ``sampling``, ...)."""
        with self._api(f"reading project {project}"):
            return _as_dict(self.sdk.projects.get(id=project))

    def update_project(self, project: int, **fields: Any) -> None:
        """Set project fields (``model_version``, ``sampling``...)."""
        with self._api(f"updating project {project} ({', '.join(fields)})"):
            self.sdk.projects.update(id=project, **fields)

    def ml_backends(self, project: int) -> list[dict[str, Any]]:
        """The ML backends connected to a project (``url``, ``title``, ``auth_method``...)."""
        with self._api(f"listing the ML backends of project {project}"):
            return [_as_dict(m) for m in self.sdk.ml.list(project=project)]

    def webhooks(self, project: int) -> list[dict[str, Any]]:
        """The webhooks of a project."""
        with self._api(f"listing the webhooks of project {project}"):
            return [_as_dict(w) for w in self.sdk.webhooks.list(project=str(project))]

    def set_webhook_headers(self, webhook: int, headers: Mapping[str, str]) -> None:
        """Replace a webhook's extra request headers."""
        with self._api(f"setting the headers of webhook {webhook}"):
            self.sdk.webhooks.update(id=check_id(webhook, "webhook"), headers=dict(headers))

    # ------------------------------------------------------------------ tasks

    def tasks(self, project: int, page_size: int = 100) -> Iterator[dict[str, Any]]:
        """Stream the project's tasks as ``{"id", "data", "total_annotations"}``, page by page."""
        with self._api(f"listing the tasks of project {project}"):
            pager = self.sdk.tasks.list(project=project, fields="all",
                                        include="id,data,total_annotations",
                                        page_size=page_size)
            for task in pager:
                task = _as_dict(task)
                if is_int(task.get("id")):
                    yield {"id": task["id"], "data": task.get("data") or {},
                           "total_annotations": task.get("total_annotations") or 0}

    def tasks_by_id(self, project: int, task_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """``{id: {"id", "data"}}`` of those of ``task_ids`` that are tasks of ``project``, as
        Label Studio holds them, in one request.

        Read through the Data Manager's listing with ``review=true``: reading a task that has
        no prediction yet (``GET /api/tasks/<id>``, or the listing without it when the project
        retrieves predictions automatically) makes Label Studio call this backend's
        ``/predict`` for it, which would then read it again.
        """
        ids = sorted(set(task_ids))
        if not ids:
            return {}
        query = json.dumps({"selectedItems": {"all": False, "included": ids}})
        out: dict[int, dict[str, Any]] = {}
        with self._api(f"reading {len(ids)} task(s) of project {project}"):
            pager = self.sdk.tasks.list(project=project, query=query, review=True,
                                        include="id,data", page_size=min(len(ids), 100))
            for task in pager:
                task = _as_dict(task)
                if task.get("id") in ids:
                    out[task["id"]] = {"id": task["id"], "data": task.get("data") or {}}
        return out

    def annotations(self, task_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """``{task id: newest non-cancelled annotation}`` of the given tasks (one request each;
        see :func:`~dbsal_backend.labelstudio.annotations.select_annotations`)."""
        by_task = {}
        for task_id in task_ids:
            with self._api(f"reading the annotations of task {task_id}"):
                by_task[task_id] = [_as_dict(a) for a in self.sdk.annotations.list(id=task_id)]
        return select_annotations(by_task)

    # ------------------------------------------------------------------ predictions

    def push_predictions(
        self, project: int, predictions: Sequence[Mapping[str, Any]], batch: int = 100
    ) -> int:
        """Store predictions, ``batch`` per request; returns how many were stored.

        Each prediction is ``{"task": id, "result": [...], "score": float in [0, 1],
        "model_version": str}``. Label Studio silently drops predictions whose score is outside
        ``[0, 1]`` or whose results do not fit the label config; that raises here.
        """
        items = [dict(p) for p in predictions]
        for k, item in enumerate(items):
            score = item.get("score")
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

    def delete_predictions(self, project: int, model_version: str) -> None:
        """Delete every prediction of ``model_version`` in a project, in one request."""
        self._raw("DELETE", f"api/projects/{project}/model-versions/",
                  f"deleting the {model_version!r} predictions of project {project}",
                  json={"model_version": model_version})
