"""The Label Studio ML backend model: a thin :class:`LabelStudioMLBase` over ``dbsal_backend``.

label-studio-ml 1.0.9 keeps no useful state in a model object: it builds a new one on every
``/setup`` (its ``AUTO_UPDATE`` default), answers ``/predict`` with whichever object the last
``/setup`` built, whatever the project, and builds one more in a new process per webhook. So
this model holds nothing of its own: everything lives in one process-wide :class:`Runtime`
(settings, state store, service, training scheduler), built once by :func:`get_runtime` when
the server starts, and ``_wsgi.py`` builds a cheap ``DBSALModel`` per request. The service
(``dbsal_backend.service.Service``) does the work; :data:`service_factory` builds it and tests
substitute a fake.

Who writes what in the state store: the wiring here owns ``label_config``, ``training_state``,
``last_error``, ``last_trained`` and ``annotations_since_run``; the service owns the rest
(model version, checkpoint, step, budget, seed batch, queue, queried superpixels).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Protocol

from label_studio_ml.model import LabelStudioMLBase

from dbsal_backend.label_config import LabelConfig, parse_label_config
from dbsal_backend.scheduler import START_TRAINING, TrainingScheduler
from dbsal_backend.settings import Settings
from dbsal_backend.state import StateStore

logger = logging.getLogger(__name__)

#: Name of the state database inside ``MODEL_DIR``.
STATE_FILE = "state.sqlite3"
#: Folder of downloaded task images inside ``MODEL_DIR``.
IMAGE_CACHE_DIR = "images"


class ServiceLike(Protocol):
    """What the wiring needs from ``dbsal_backend.service.Service``."""

    def predict(self, project: int, tasks: list[dict], label_config: LabelConfig) -> list[dict]:
        """One Label Studio prediction dict per task, in order."""

    def run(self, project: int) -> Any:
        """One training run and active-learning step (the scheduler's ``run_fn``)."""

    def status(self, project: int) -> dict:
        """Extra status of the project, JSON-serialisable."""

    def on_setup(self, project: int, label_config: LabelConfig) -> None:
        """The project connected or its label config changed; must return within ~1 s."""


def _default_service(settings: Settings, state: StateStore) -> ServiceLike:
    """The real service; its ``client_factory()`` opens a :class:`LabelStudioClient`."""
    from dbsal_backend.ls_client import LabelStudioClient
    from dbsal_backend.service import Service

    def client_factory() -> LabelStudioClient:
        return LabelStudioClient(
            settings.label_studio_url,
            settings.label_studio_api_key or "",
            cache_dir=settings.model_dir / IMAGE_CACHE_DIR,
        )

    return Service(settings, state, client_factory)


#: Builds the service from the settings and the state store; tests substitute a fake.
service_factory: Callable[[Settings, StateStore], ServiceLike] = _default_service


@dataclass
class Runtime:
    """Everything that lives once per process."""

    settings: Settings
    state: StateStore
    service: ServiceLike
    scheduler: TrainingScheduler

    def setup(self, project: int, xml: str) -> LabelConfig:
        """Validate a project's label config, store it and tell the service.

        Raises
        ------
        LabelConfigError
            When the config has no single Image with a BrushLabels tied to it.
        """
        config = parse_label_config(xml)
        if self.state.ensure_project(project)["label_config"] != xml:
            self.state.update_project(project, label_config=xml)
        self.service.on_setup(project, config)
        return config

    def label_config(self, project: int) -> LabelConfig | None:
        """The project's stored label config, parsed; None when it has none."""
        record = self.state.get_project(project)
        if record is None or not record["label_config"]:
            return None
        return parse_label_config(record["label_config"])


def build_runtime(settings: Settings | None = None) -> Runtime:
    """Open the state store in ``MODEL_DIR``, build the service and the scheduler.

    The scheduler takes over each project's annotation counter and failure from the store;
    projects whose training was queued or running when the process stopped become ``failed``
    ("interrupted").
    """
    settings = Settings.from_env() if settings is None else settings
    settings.model_dir.mkdir(parents=True, exist_ok=True)
    state = StateStore(settings.model_dir / STATE_FILE)
    service = service_factory(settings, state)

    def persist(project: Hashable, status: dict[str, Any]) -> None:
        fields: dict[str, Any] = {
            "training_state": status["state"],
            "annotations_since_run": status["pending_events"],
        }
        if status["last_finished"] is not None:  # a run ended in this process
            fields["last_error"] = status["last_error"]
        if status["last_success"] is not None:
            fields["last_trained"] = status["last_success"]
        state.update_project(project, **fields)

    scheduler = TrainingScheduler(service.run, train_after=settings.train_after, on_change=persist)
    for project in state.projects():
        record = state.get_project(project)
        error = record["last_error"] if record["training_state"] == "failed" else None
        if record["training_state"] in ("queued", "running"):
            error = "interrupted: the backend stopped during a training run"
            state.update_project(project, training_state="failed", last_error=error)
        scheduler.restore(project, record["annotations_since_run"], last_error=error)
    logger.info("runtime ready: %r", settings)
    return Runtime(settings, state, service, scheduler)


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def get_runtime(settings: Settings | None = None) -> Runtime:
    """The process-wide runtime, built on first use from ``settings`` (default: the environment)."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = build_runtime(settings)
        return _runtime


def set_runtime(runtime: Runtime | None) -> None:
    """Replace the process-wide runtime (``None``: build again on next use)."""
    global _runtime
    with _runtime_lock:
        _runtime = runtime


class DBSALModel(LabelStudioMLBase):
    """DBSAL as a Label Studio ML backend model.

    Parameters
    ----------
    label_config : str, optional
        The project's label config; validated here, so an unusable one fails at ``/setup``.
    project : int, optional
        Label Studio project id; without it, taken from the tasks given to :meth:`predict`.
    **kwargs
        Passed to :class:`LabelStudioMLBase` (``train_output``, ``hostname``, ``access_token``).

    Raises
    ------
    LabelConfigError
        When ``label_config`` has no single Image with a BrushLabels tied to it.
    """

    def __init__(
        self, label_config: str | None = None, project: int | None = None, **kwargs: Any
    ) -> None:
        self.config = parse_label_config(label_config) if label_config else None
        super().__init__(label_config=label_config, **kwargs)
        self.project = project
        self.runtime = get_runtime()

    def setup(self) -> None:
        """Store the (validated) label config for the project and tell the service.

        label-studio-ml 1.0.9 has no ``setup`` hook; the server's ``/setup`` route calls this.
        """
        if self.project is None or not self.label_config:
            raise ValueError("setup needs the model's project id and label config")
        self.runtime.setup(self.project, self.label_config)

    def predict(self, tasks: list[dict], **kwargs: Any) -> list[dict]:
        """One prediction per task, in order, from the service.

        Raises
        ------
        ValueError
            When the project is unknown or has no label config.
        RuntimeError
            When the service answers with a wrong number of predictions.
        """
        if not tasks:
            return []
        project = self.project if self.project is not None else tasks[0].get("project")
        if isinstance(project, bool) or not isinstance(project, int):
            raise ValueError("cannot tell the project: pass project= or tasks with a 'project' id")
        config = self.config or self.runtime.label_config(project)
        if config is None:
            raise ValueError(
                f"project {project} has no label config; connect the backend first (/setup)"
            )
        predictions = self.runtime.service.predict(project, tasks, config)
        if not isinstance(predictions, list) or len(predictions) != len(tasks):
            got = len(predictions) if isinstance(predictions, list) else type(predictions).__name__
            raise RuntimeError(f"service returned {got} predictions for {len(tasks)} tasks")
        title = self.runtime.settings.model_title
        for prediction in predictions:
            if not isinstance(prediction, dict) or "result" not in prediction:
                raise RuntimeError("service returned a prediction without a 'result'")
            prediction.setdefault("model_version", title)
        return predictions

    def fit(
        self, tasks: Any = (), workdir: str | None = None, event: str = START_TRAINING, **kwargs: Any
    ) -> dict:
        """Hand a training event to the scheduler; training runs in the background.

        Returns
        -------
        dict
            ``{"project": id, "event": event, "training": outcome}`` where outcome is what
            :meth:`TrainingScheduler.notify` answered.
        """
        if self.project is None:
            raise ValueError("fit needs the model's project id")
        outcome = self.runtime.scheduler.notify(self.project, event)
        return {"project": self.project, "event": event, "training": outcome}
