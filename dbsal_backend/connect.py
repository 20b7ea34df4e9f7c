"""Which Label Studio projects really connected this backend, and what to set up in them.

Anyone who reaches the backend can call ``/setup`` with any project id, so a call proves
nothing. A project counts as connected when Label Studio itself (asked with the backend's API
key) lists an ML backend for it whose URL is this backend: either ``DBSAL_PUBLIC_URL``, or a URL
whose ``/health`` answers this process's instance id. Label Studio calls ``/setup`` before it
saves the backend's row, so the confirmation runs in the background and retries for a while.

Once confirmed, :func:`prepare_project` makes the project work with the backend: "Uncertainty
sampling" (so "Label All Tasks" serves the least confident task first; ``DBSAL_SET_SAMPLING``),
and, when basic auth is on, the ``Authorization`` header on the webhook Label Studio created for
the backend (it sends none of its own).
"""

from __future__ import annotations

import base64
import logging
import secrets
from typing import Any
from urllib.parse import urlsplit

import httpx

from .images import origin
from .ls_client import UNCERTAINTY_SAMPLING, LabelStudioClient

__all__ = ["INSTANCE_ID", "SelfCheckFailed", "find_backend", "prepare_project"]

#: Seconds a listed backend URL gets to answer ``/health`` when the backend looks for itself.
SELF_CHECK_TIMEOUT = 10.0


class SelfCheckFailed(RuntimeError):
    """A URL Label Studio lists for the project did not answer: connected or not is unknown."""

logger = logging.getLogger(__name__)

#: A random id of this backend process (and its job processes), answered by ``/health``.
INSTANCE_ID = secrets.token_hex(16)


def _same_url(a: str, b: str) -> bool:
    return (origin(a), urlsplit(a).path.rstrip("/")) == (origin(b), urlsplit(b).path.rstrip("/"))


def _is_us(url: str, instance_id: str, public_url: str | None) -> bool | None:
    """True: ``url`` is this process; False: it is not; None: it did not answer (unknown)."""
    if public_url and _same_url(url, public_url):
        return True
    try:
        response = httpx.get(url.rstrip("/") + "/health", timeout=SELF_CHECK_TIMEOUT,
                             follow_redirects=False, trust_env=False)
    except httpx.HTTPError:
        return None
    try:
        return response.status_code == 200 and response.json().get("instance") == instance_id
    except (ValueError, AttributeError):
        return False


def find_backend(client: LabelStudioClient, project: int, instance_id: str,
                 public_url: str | None = None) -> dict[str, Any] | None:
    """The ML-backend row of ``project`` that is this backend, or None.

    Raises
    ------
    SelfCheckFailed
        When no listed URL is this backend but some did not answer: a busy or unreachable
        backend is not evidence that the project disconnected it.
    """
    silent = []
    for backend in client.ml_backends(project):
        url = backend.get("url")
        if not (isinstance(url, str) and url.startswith(("http://", "https://"))):
            continue
        us = _is_us(url, instance_id, public_url)
        if us:
            return backend
        if us is None:
            silent.append(url)
    if silent:
        raise SelfCheckFailed(
            f"cannot confirm that project {project} connected this backend: "
            f"{', '.join(u[:200] for u in silent)} did not answer /health within "
            f"{SELF_CHECK_TIMEOUT:g} s (behind a proxy, set DBSAL_PUBLIC_URL)")
    return None


def prepare_project(client: LabelStudioClient, project: int, backend_url: str,
                    set_sampling: bool, auth: tuple[str, str] | None) -> list[str]:
    """Set the project's sampling and the webhook's auth header; returns what was changed."""
    done = []
    if set_sampling and client.get_project(project).get("sampling") != UNCERTAINTY_SAMPLING:
        client.update_project(project, sampling=UNCERTAINTY_SAMPLING)
        logger.info("project %d: sampling set to %r (DBSAL_SET_SAMPLING=false keeps it as it "
                    "was), so 'Label All Tasks' serves the least confident task first",
                    project, UNCERTAINTY_SAMPLING)
        done.append("sampling")
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        wanted = f"Basic {token}"
        hook_url = backend_url.rstrip("/") + "/webhook"
        for hook in client.webhooks(project):
            if hook.get("url", "").rstrip("/") != hook_url:
                continue
            headers = dict(hook.get("headers") or {})
            if headers.get("Authorization") != wanted:
                headers["Authorization"] = wanted
                client.set_webhook_headers(hook["id"], headers)
                logger.info("project %d: webhook %s now sends the backend's basic auth",
                            project, hook["id"])
                done.append("webhook auth")
    return done
