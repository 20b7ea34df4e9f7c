"""HTTP entry point of the DBSAL Label Studio ML backend.

Run ``python _wsgi.py [--host HOST] [--port PORT]`` (defaults from ``HOST``/``PORT``), or
``gunicorn --workers 1 --threads 8 --bind 0.0.0.0:9090 _wsgi:app``. Use ONE worker process: the
training scheduler and the loaded model live in the process, and several workers would split
Label Studio's events between them and train the same project at once.

The app is label-studio-ml 1.0.9's Flask app (``/``, ``/health``, ``/metrics`` kept) with these
routes replaced or added, every one answering JSON, and every error a 4xx/5xx whose JSON body and
HTTP reason phrase carry the message (Label Studio shows only the reason phrase):

- ``POST /setup``: validates the label config (400 with the reason when unusable), stores it;
  answers at once (Label Studio allows 3 s and calls it before every batch of predictions).
- ``POST /predict``: one prediction per task, in order, from the service.
- ``POST /webhook``: Label Studio's events, handed to the training scheduler; answers at once.
- ``GET|POST /versions``: the model versions (Label Studio 1.23 calls it with GET).
- ``GET /status?project=ID``: model version, training state, step, budget, queue length, error.
- ``POST /train`` (Label Studio without webhook training) and ``GET /is_training?project=ID``.
"""

from __future__ import annotations

import argparse
import functools
import logging
import re
import sys
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Any

from flask import Flask, Response, jsonify, request
from label_studio_ml.api import init_app

import model as backend
from dbsal_backend.label_config import LabelConfigError
from dbsal_backend.scheduler import START_TRAINING
from dbsal_backend.settings import Settings

logger = logging.getLogger("dbsal_backend.server")

_SECRET_FIELDS = re.compile(
    r"""((?:access_token|api_key|password|refresh)["']?\s*[:=]\s*["']?)[^"'\s,&}]+""", re.IGNORECASE
)
_AUTH_HEADER = re.compile(r"(Authorization:\s*(?:Token|Bearer)\s+)\S+", re.IGNORECASE)


class SecretFilter(logging.Filter):
    """Masks secrets in log records: the given values, tokens/passwords in JSON or query strings,
    and ``Authorization`` headers. Attach it to a handler."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def mask(self, text: str) -> str:
        """``text`` with every secret replaced by ``***``."""
        for secret in self.secrets:
            text = text.replace(secret, "***")
        text = _SECRET_FIELDS.sub(r"\1***", text)
        return _AUTH_HEADER.sub(r"\1***", text)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.mask(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.mask(record.exc_text)
        if record.stack_info:
            record.stack_info = self.mask(record.stack_info)
        return True


def configure_logging(settings: Settings) -> None:
    """Log to stderr at ``LOG_LEVEL`` through a :class:`SecretFilter` holding the API key."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_dbsal", False)]:
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[%(asctime)s] [%(levelname)s] [%(name)s] %(message)s"))
    handler.addFilter(SecretFilter([settings.label_studio_api_key]))
    handler._dbsal = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(settings.log_level)


# -- errors -------------------------------------------------------------------------------


class ApiError(Exception):
    """A client error: answered with ``status`` and ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _error(status: int, message: str) -> Response:
    response = jsonify({"error": message, "status": status})
    reason = "".join(c if " " <= c <= "~" else "?" for c in " ".join(message.split()))[:1000]
    response.status = f"{status} {reason}" if reason else str(status)
    return response


def _api(view: Callable[..., Any]) -> Callable[..., Any]:
    """Turn ApiError and LabelConfigError into 4xx and anything else into a logged 500."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return view(*args, **kwargs)
        except ApiError as exc:
            logger.warning("%s %s: %d %s", request.method, request.path, exc.status, exc.message)
            return _error(exc.status, exc.message)
        except LabelConfigError as exc:
            logger.warning("%s %s: label config refused: %s", request.method, request.path, exc)
            return _error(400, str(exc))
        except Exception as exc:  # noqa: BLE001 - answer, never crash the server
            logger.exception("%s %s failed", request.method, request.path)
            return _error(500, f"{type(exc).__name__}: {exc}")

    return wrapped


# -- request parsing ----------------------------------------------------------------------


def _body() -> dict[str, Any]:
    data = request.get_json(force=True, silent=True)
    if not isinstance(data, dict):
        raise ApiError(400, "expected a JSON object in the request body")
    return data


def _project_id(value: Any, where: str) -> int:
    """A project id from an int, ``"12"``, Label Studio's ``"12.1700000000"`` or ``{"id": 12}``."""
    if isinstance(value, dict):
        value = value.get("id")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.split(".", 1)[0].isdigit():
        return int(value.split(".", 1)[0])
    raise ApiError(400, f"{where} must be a project id (an integer), got {value!r}")


def _unknown(project: int) -> ApiError:
    return ApiError(404, f"unknown project {project}: connect the backend to it first (/setup)")


def _known(runtime: backend.Runtime, project: int) -> dict[str, Any]:
    record = runtime.state.get_project(project)
    if record is None:
        raise _unknown(project)
    return record


# -- routes -------------------------------------------------------------------------------


@_api
def setup() -> Any:
    """Validate and store the project's label config; answer the title as model version."""
    data = _body()
    project = _project_id(data.get("project"), "project")
    schema = data.get("schema")
    if not isinstance(schema, str) or not schema.strip():
        raise ApiError(400, "schema (the project's label config, a string) is required")
    model = backend.DBSALModel(label_config=schema, project=project)  # validates
    model.setup()
    return jsonify({"model_version": model.runtime.settings.model_title})


@_api
def predict() -> Any:
    """One prediction per task, in order."""
    data = _body()
    tasks = data.get("tasks")
    if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
        raise ApiError(400, "tasks must be a list of task objects")
    raw_project = data.get("project")
    if raw_project is None:
        raw_project = tasks[0].get("project") if tasks else None
    project = _project_id(raw_project, "project")
    label_config = data.get("label_config")
    if label_config is not None and not isinstance(label_config, str):
        raise ApiError(400, "label_config must be a string")
    model = backend.DBSALModel(label_config=label_config, project=project)
    if model.runtime.state.get_project(project) is None:
        if not label_config:
            raise _unknown(project)
        model.setup()
    predictions = model.predict(tasks)
    return jsonify({"results": predictions, "model_version": model.runtime.settings.model_title})


@_api
def webhook() -> Any:
    """Hand a Label Studio event to the training scheduler."""
    data = _body()
    action = data.get("action")
    if not isinstance(action, str) or not action:
        raise ApiError(400, "action (the event name, a string) is required")
    if not isinstance(data.get("project"), dict):
        raise ApiError(400, "project (an object with an id) is required")
    project = _project_id(data["project"].get("id"), "project.id")
    xml = data["project"].get("label_config")
    known = backend.get_runtime().state.get_project(project) is not None
    register = isinstance(xml, str) and bool(xml.strip()) and (not known or action == "PROJECT_UPDATED")
    if not (known or register):
        raise _unknown(project)
    model = backend.DBSALModel(label_config=xml if register else None, project=project)
    if register:
        model.setup()
    outcome = model.fit(event=action)["training"]
    logger.info("webhook %s for project %s: %s", action, project, outcome)
    return jsonify({"project": project, "action": action, "training": outcome})


@_api
def train() -> Any:
    """Label Studio's training call when webhook training is off: START_TRAINING."""
    data = _body()
    project = _project_id(data.get("project"), "project")
    _known(backend.get_runtime(), project)
    outcome = backend.DBSALModel(project=project).fit(event=START_TRAINING)["training"]
    return jsonify({"project": project, "training": outcome}), 201


@_api
def versions() -> Any:
    """The model versions: the title, which every prediction carries."""
    title = backend.get_runtime().settings.model_title
    return jsonify({"versions": [title], "model_version": title})


def _time(seconds: float | None) -> str | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, timezone.utc).isoformat()


@_api
def status() -> Any:
    """What the backend knows about a project."""
    project = _project_id(request.args.get("project"), "the project query parameter")
    runtime = backend.get_runtime()
    record = _known(runtime, project)
    settings = runtime.settings
    budget = record["budget"] or {
        "unit": settings.budget_unit, "limit": settings.budget,
        "images": 0, "superpixels": 0, "pixels": 0,
    }
    spent = budget.get(budget.get("unit"), 0)
    limit = budget.get("limit")
    return jsonify({
        "project": project,
        "model_version": record["model_version"],
        "training_state": record["training_state"],
        "follow_up_run": runtime.scheduler.status(project)["follow_up"],
        "annotations_since_run": record["annotations_since_run"],
        "train_after": settings.train_after,
        "last_error": record["last_error"],
        "last_trained": _time(record["last_trained"]),
        "al_step": record["al_step"],
        "budget": {**budget, "spent": spent, "left": None if limit is None else max(limit - spent, 0)},
        "queue_length": len(runtime.state.queue(project)),
        "service": runtime.service.status(project),
    })


@_api
def is_training() -> Any:
    """Whether a training run is going or queued."""
    project = _project_id(request.args.get("project"), "the project query parameter")
    runtime = backend.get_runtime()
    record = _known(runtime, project)
    return jsonify({
        "is_training": record["training_state"] in ("queued", "running"),
        "model_version": record["model_version"],
    })


#: label-studio-ml 1.0.9 endpoint name -> our view.
_REPLACED = {
    "_setup": setup,
    "_predict": predict,
    "webhook": webhook,
    "_train": train,
    "get_version": versions,
    "_is_training": is_training,
}


def create_app(settings: Settings) -> Flask:
    """label-studio-ml's Flask app with our routes in place of its own (idempotent)."""
    app = init_app(model_class=backend.DBSALModel, model_dir=str(settings.model_dir))
    if app.config.get("DBSAL_ROUTES"):
        return app
    missing = sorted(set(_REPLACED) - set(app.view_functions))
    if missing:
        raise RuntimeError(f"label-studio-ml changed: endpoints {missing} not found")
    app.view_functions.update(_REPLACED)
    app.add_url_rule("/versions", endpoint="get_version", methods=["GET"])
    app.add_url_rule("/status", endpoint="dbsal_status", view_func=status, methods=["GET"])
    app.config["DBSAL_ROUTES"] = True
    return app


def main(argv: list[str] | None = None) -> None:
    """Serve with Flask's threaded server."""
    parser = argparse.ArgumentParser(description="DBSAL Label Studio ML backend")
    parser.add_argument("--host", default=_settings.host,
                        help="listen address (env HOST, default %(default)s)")
    parser.add_argument("--port", type=int, default=_settings.port,
                        help="port (env PORT, default %(default)s)")
    args = parser.parse_args(argv)
    logger.info("serving on http://%s:%d", args.host, args.port)
    app.run(host=args.host, port=args.port, threaded=True)


_settings = Settings.from_env()
configure_logging(_settings)
app = create_app(_settings)
backend.get_runtime(_settings)  # load the service (and its model) now, never inside a request

if __name__ == "__main__":
    main()
