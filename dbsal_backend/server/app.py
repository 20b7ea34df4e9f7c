"""The HTTP API Label Studio talks to (Flask), safe to put on a network.

:func:`init_app` builds the app around a model class (the label-studio-ml convention:
``_wsgi.py`` is ``app = init_app(model_class=DBSALModel)``). Every answer is JSON but the page
``GET /`` shows a browser, errors included (``{"error": ..., "status": ...}``, the message also in
the HTTP reason phrase, which is all Label Studio shows). Routes:

========================  =========================================================================
``GET /health``           liveness, this instance's id, known problems (no auth)
``POST /setup``           Label Studio connects or re-checks: config checked, model version answered
``POST /predict``         one prediction per task, in order (regions computed now)
``POST /webhook``         Label Studio's events; training runs in the background
``GET /``                 the page for people (HTML, :mod:`~dbsal_backend.server.dashboard`) when the
                          client prefers text/html; else (or ``?format=json``) name and routes
``GET /status?project=``  model, training, step, budget, pre-label accuracy, questions ready
``GET /status``           the same for every project the backend knows (what the page shows)
``GET|POST /versions``    the model version
``POST /train``           "Start Training" for Label Studio versions that call it
``GET /is_training``      whether a run is going
========================  =========================================================================

Limits: ``BASIC_AUTH_USER``/``BASIC_AUTH_PASS`` on every route but ``/health`` (compared in
constant time); bodies of at most ``DBSAL_MAX_REQUEST_BYTES``; JSON nested too deeply is a 400;
ids are ASCII integers in ``1..2**63-1``; at most ``DBSAL_MAX_TASKS_PER_REQUEST`` tasks. Logs hold
one line per request, never a body or a header.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import re
import time
from typing import Any

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from . import dashboard
from ..engine.checks import MAX_ID, is_int
from ..labelstudio.label_config import LabelConfigError
from .runtime import get_runtime
from .context import NotConnected
from .state import DamagedRecord

__all__ = ["ApiError", "init_app", "project_id"]

logger = logging.getLogger("dbsal_backend.server.app")

_ID = re.compile(r"([0-9]{1,19})(?:\.[0-9]{1,30})?")


class ApiError(Exception):
    """A client error: answered with ``status`` and ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """``{"error": message, "status": status}`` with the message as the reason phrase."""
    response = Response(json.dumps({"error": message, "status": status}), status=status,
                        mimetype="application/json", headers=headers)
    reason = "".join(c if " " <= c <= "~" else "?" for c in " ".join(message.split()))[:300]
    if reason:
        response.status = f"{status} {reason}"
    return response


def project_id(value: Any, where: str) -> int:
    """A project id from ``12``, ``"12"``, Label Studio's ``"12.1700000000"`` or ``{"id": 12}``:
    ASCII digits only, in ``1..2**63-1``."""
    given = value.get("id") if isinstance(value, dict) else value
    number = given
    if isinstance(given, str):
        match = _ID.fullmatch(given)
        number = int(match.group(1)) if match else None
    if _is_id(number):
        return number
    raise ApiError(400, f"{where} must be a project id (an integer in 1..{MAX_ID}), "
                        f"got {_kind(given)}")


def _is_id(value: Any) -> bool:
    """Whether ``value`` is an id as JSON gives it: an int in ``1..2**63-1``, not a bool."""
    return is_int(value) and 1 <= value <= MAX_ID


def _kind(value: Any) -> str:
    """What a value is, without repeating it (error messages reach the log)."""
    if isinstance(value, str):
        return f"a string of {len(value)} characters"
    return "nothing" if value is None else f"a {type(value).__name__}"


def _body() -> dict[str, Any]:
    raw = request.get_data(cache=False)
    try:
        data = json.loads(raw)
    except RecursionError:
        raise ApiError(400, "the JSON body is nested too deeply") from None
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "expected a JSON object in the request body") from None
    if not isinstance(data, dict):
        raise ApiError(400, "expected a JSON object in the request body")
    return data


#: Headers of the HTML page: no scripts, frames or outside resources at all.
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                                           "img-src data:; frame-ancestors 'none'; "
                                           "base-uri 'none'; form-action 'none'",
                "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                "Cache-Control": "no-store"}


def wants_html() -> bool:
    """Whether ``GET /`` should answer the page: ``?format=html``, or a client (a browser)
    whose Accept header prefers text/html to JSON. ``?format=json``, no Accept header or
    ``*/*`` get the JSON."""
    asked = request.args.get("format", "").lower()
    if asked in ("json", "html"):
        return asked == "html"
    return request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html"


def init_app(model_class: type, settings=None) -> Flask:
    """The Flask app serving ``model_class`` (a ``LabelStudioMLBase`` subclass whose instances
    take ``project=`` and offer ``setup()``, ``predict(tasks)`` and ``fit(event=...)``)."""
    runtime = get_runtime()
    settings = settings or runtime.settings
    app = Flask("dbsal")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.json.sort_keys = False
    credentials = settings.auth

    @app.before_request
    def authenticate() -> Response | None:
        g.started = time.perf_counter()
        if credentials is None or request.path == "/health":
            return None
        header = request.headers.get("Authorization", "")
        given = b""
        if header[:6].lower() == "basic ":
            try:
                given = base64.b64decode(header[6:].strip(), validate=True)
            except ValueError:
                given = b""
        wanted = f"{credentials[0]}:{credentials[1]}".encode()
        if not hmac.compare_digest(given, wanted):
            return error_response(401, "authentication required (HTTP basic auth: the "
                                       "backend's BASIC_AUTH_USER and BASIC_AUTH_PASS)",
                                  {"WWW-Authenticate": 'Basic realm="dbsal"'})
        return None

    @app.after_request
    def access_log(response: Response) -> Response:
        started = g.get("started")
        took = (time.perf_counter() - started) * 1000 if started else 0.0
        logger.info("%s %s %s %.0fms", request.method, request.path[:200],
                    response.status_code, took)
        return response

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> Response:
        logger.warning("%s %s: %d %s", request.method, request.path[:200], exc.status,
                       exc.message)
        return error_response(exc.status, exc.message)

    @app.errorhandler(LabelConfigError)
    def config_error(exc: LabelConfigError) -> Response:
        return error_response(400, str(exc))

    @app.errorhandler(NotConnected)
    def not_connected(exc: NotConnected) -> Response:
        return error_response(404, str(exc))

    @app.errorhandler(DamagedRecord)
    def damaged(exc: DamagedRecord) -> Response:
        logger.error("%s", exc)
        return error_response(409, str(exc))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        return error_response(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        logger.exception("%s %s failed", request.method, request.path[:200])
        return error_response(500, f"{type(exc).__name__}: {str(exc)[:300]}")

    def model(project: int) -> Any:
        return model_class(project=project)

    @app.get("/")
    def index() -> Any:
        if not wants_html():
            return {"name": "dbsal", "status": "UP",
                    "routes": ["/health", "/setup", "/predict", "/webhook", "/status",
                               "/versions"]}
        page = dashboard.render(dashboard.overview(runtime),
                                backend_url=settings.public_url or request.host_url)
        response = Response(page, mimetype="text/html")
        response.headers.update(PAGE_HEADERS)
        response.vary.add("Accept")
        return response

    @app.get("/health")
    def health() -> Any:
        return runtime.health()

    @app.post("/setup")
    def setup() -> Any:
        data = _body()
        project = project_id(data.get("project"), "project")
        schema = data.get("schema")
        if not isinstance(schema, str) or not schema.strip():
            raise ApiError(400, "schema (the project's label config, a string) is required")
        return {"model_version": model(project).setup(schema)}

    @app.post("/predict")
    def predict() -> Any:
        data = _body()
        tasks = data.get("tasks")
        if not isinstance(tasks, list) or not all(
                isinstance(t, dict) and _is_id(t.get("id")) for t in tasks):
            raise ApiError(400, "tasks must be a list of task objects with integer ids")
        if len(tasks) > settings.max_tasks_per_request:
            raise ApiError(413, f"{len(tasks)} tasks in one request; at most "
                                f"{settings.max_tasks_per_request} (DBSAL_MAX_TASKS_PER_REQUEST)")
        raw = data.get("project")
        if raw is None and tasks:
            raw = tasks[0].get("project")
        project = project_id(raw, "project")
        results, version = model(project).predict_with_version(tasks)
        return {"results": results, "model_version": version}

    @app.post("/webhook")
    def webhook() -> Any:
        data = _body()
        action = data.get("action")
        if not isinstance(action, str) or not action or len(action) > 100:
            raise ApiError(400, "action (the event name, a string) is required")
        project = project_id(data.get("project"), "project.id")
        task = data.get("task")
        task_id = task.get("id") if isinstance(task, dict) else None
        task_id = task_id if _is_id(task_id) else None  # an event without a usable task
        outcome = model(project).fit(event=action, task=task_id)
        return {"project": project, "action": action, "training": outcome}

    @app.post("/train")
    def train() -> Any:
        project = project_id(_body().get("project"), "project")
        return {"project": project, "training": model(project).fit(event="START_TRAINING")}, 201

    @app.route("/versions", methods=["GET", "POST"])
    def versions() -> Any:
        title = settings.model_title
        return {"versions": [title], "model_version": title}

    @app.get("/status")
    def status() -> Any:
        if "project" not in request.args:
            return dashboard.overview(runtime)
        project = project_id(request.args.get("project"), "the project query parameter")
        return model(project).status()

    @app.get("/is_training")
    def is_training() -> Any:
        project = project_id(request.args.get("project"), "the project query parameter")
        return runtime.training(project)

    return app
