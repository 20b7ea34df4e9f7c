"""Which Label Studio projects really connected this backend, and what to set up in them.

Anyone who reaches the backend can call ``/setup`` with any project id, so a call proves
nothing. A project counts as connected when Label Studio itself (asked with the backend's API
key) lists an ML backend for it whose URL is this backend: either ``DBSAL_PUBLIC_URL``, or a URL
whose ``/health`` answers this process's instance id. Label Studio calls ``/setup`` before it
saves the backend's row, so the confirmation runs in the background and retries for a while
(:class:`Connections`: ``/setup`` answers at once, a thread confirms, records and prepares).

Once confirmed, :func:`prepare_project` makes the project work with the backend: "Uncertainty
sampling" (so "Label All Tasks" serves the least confident task first; ``DBSAL_SET_SAMPLING``),
the annotators' instructions when the project has none (``DBSAL_SET_INSTRUCTIONS``; Label
Studio shows them before labeling), and, when basic auth is on, the ``Authorization`` header on the webhook Label Studio created for
the backend (it sends none of its own).
"""

from __future__ import annotations

import base64
import logging
import secrets
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from ..labelstudio.images import origin
from ..labelstudio.label_config import parse_label_config
from ..labelstudio.client import UNCERTAINTY_SAMPLING, LabelStudioClient, LabelStudioError
from .state import ProjectRecord

if TYPE_CHECKING:
    from .context import ServiceContext

__all__ = ["INSTANCE_ID", "Connections", "SelfCheckFailed", "annotator_instructions",
           "find_backend", "prepare_project"]

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


#: What a person does with a region, by :data:`~dbsal_backend.engine.regions.ANSWERS`.
_REGION_ANSWERS = {
    "dominant": "Right label: keep it. Wrong label: select the region in the list, then click "
                "the class that covers most of it. Never redraw parts: one class per region.",
    "repaint": "Right label: keep it. Wrong label: select the region in the list, then click "
               "the right label. Part of a region is another class: redraw that part.",
}


#: What a person does with a start's regions (``DBSAL_START=regions``).
_START_REGIONS = (
    "<li><b>A task of gray regions without labels</b> (the first ones, shown as 0%): the model "
    "has seen nothing yet. For each region: select it in the list, then click the class that "
    "covers most of it (or press its key). Leave a region you cannot tell. Draw nothing else. "
    "Then Submit.</li>")


def annotator_instructions(answers: str, start: str = "images") -> str:
    """The annotators' instructions (README "For annotators") as Label Studio's project
    instructions, shown before labeling; ``answers`` is what a person does with a region,
    ``start`` how the project starts (``DBSAL_START``)."""
    return (
        "<h3>Labeling with the model's help</h3>"
        "<p>Press <b>Label All Tasks</b>: tasks come in the order that teaches the model most.</p>"
        "<ul>"
        + (_START_REGIONS if start == "regions" else "") +
        "<li><b>A task without regions</b> (shown as 0%): label the whole image, every object, "
        "then Submit.</li>"
        "<li><b>A task with regions</b>: the model marked only the areas it is unsure about, "
        f"each with its guess. {_REGION_ANSWERS[answers]}</li>"
        "<li><b>Areas without a region need nothing</b>: the model is sure there. Then "
        "Submit.</li>"
        "</ul>"
    )


def prepare_project(client: LabelStudioClient, project: int, backend_url: str,
                    set_sampling: bool, auth: tuple[str, str] | None,
                    instructions: str | None = None) -> list[str]:
    """Set the project's sampling, its ``instructions`` (when given and it has none) and the
    webhook's auth header; returns what was changed."""
    done = []
    fields = client.get_project(project)
    if instructions and not (fields.get("expert_instruction") or "").strip():
        client.update_project(project, expert_instruction=instructions, show_instruction=True)
        logger.info("project %d: annotators' instructions set (DBSAL_SET_INSTRUCTIONS=false "
                    "leaves them out)", project)
        done.append("instructions")
    if set_sampling and fields.get("sampling") != UNCERTAINTY_SAMPLING:
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


#: How long a /setup keeps asking Label Studio whether the backend's row was saved.
CONFIRM_SECONDS = 30.0
#: Pending confirmations at most (a flood of /setup calls costs no more than this).
MAX_PENDING_CONFIRMATIONS = 8


class Connections:
    """Confirms, records and prepares the projects that connect this backend.

    Parameters
    ----------
    context : ServiceContext
    instance_id : str
        This server's instance id, answered by ``/health`` (how a project is confirmed).
    on_confirmed : callable
        ``on_confirmed(client, project, record)`` once a ``/setup`` is confirmed.
    """

    def __init__(self, context: ServiceContext, instance_id: str,
                 on_confirmed: Callable[[LabelStudioClient, int, ProjectRecord], None]) -> None:
        self.context = context
        self.instance_id = instance_id
        self.on_confirmed = on_confirmed
        self._pending: set[int] = set()
        self._lock = threading.Lock()

    def setup(self, project: int, schema: str) -> str:
        """Label Studio connected or re-checked the backend. Checks ``schema`` (raises
        ``LabelConfigError``) and answers the model version at once; an unconfirmed project
        is confirmed, prepared and seeded in the background."""
        parse_label_config(schema)
        record = self.context.state.get(project)
        if record is not None and record.connected:
            return self.context.title(record)
        with self._lock:
            start = project not in self._pending and len(self._pending) < \
                MAX_PENDING_CONFIRMATIONS
            if start:
                self._pending.add(project)
        if start:
            threading.Thread(target=self._confirm_in_background, args=(project,), daemon=True,
                             name=f"dbsal-confirm-{project}").start()
        return self.context.settings.model_title

    def _confirm_in_background(self, project: int) -> None:
        try:
            deadline = time.monotonic() + CONFIRM_SECONDS
            while time.monotonic() < deadline:
                with self.context.client_factory() as client:
                    try:
                        record = self.connect(client, project)
                    except SelfCheckFailed as exc:
                        logger.info("project %d: %s; trying again", project, exc)
                        record = None
                    if record is not None:
                        self.on_confirmed(client, project, record)
                        return
                time.sleep(1.0)
            logger.warning("project %d called /setup but Label Studio does not list this "
                           "backend for it: nothing was registered", project)
        except Exception:  # noqa: BLE001 - a background thread must not die silently
            logger.exception("project %d: confirming the connection failed", project)
        finally:
            with self._lock:
                self._pending.discard(project)

    def connect(self, client: LabelStudioClient, project: int) -> ProjectRecord | None:
        """Confirm over the API that ``project`` connected this backend; record it (with the
        label config Label Studio holds) and prepare it. None when it is not connected."""
        state, settings = self.context.state, self.context.settings
        try:
            backend = find_backend(client, project, self.instance_id, settings.public_url)
        except LabelStudioError as exc:
            if exc.status_code == 404:
                return None
            raise
        if backend is None:
            record = state.get(project)
            if record is not None and record.connected:
                state.update(project, connected=False,
                             last_error="the project no longer lists this backend")
            return None
        schema = client.get_project(project).get("label_config") or ""
        config = parse_label_config(schema)
        polygons = config.polygon_name is not None
        text = (annotator_instructions(settings.answers_for(polygons), settings.start_for(polygons))
                if settings.set_instructions else None)
        done = prepare_project(client, project, backend["url"], settings.set_sampling,
                               settings.auth, text)
        record = state.update(project, connected=True, label_config=schema,
                              title=backend.get("title") or settings.model_title)
        logger.info("project %d connected (backend %r%s)", project, record.title,
                    f"; set {', '.join(done)}" if done else "")
        return record
