"""The active-learning loop against Label Studio projects: a short orchestrator.

:class:`Service` owns no job itself; it wires one module per job over a shared
:class:`~dbsal_backend.server.context.ServiceContext` (settings, state, client, serving models,
superpixel cache, labeling budget, compute backend):

- :meth:`Service.setup` — Label Studio connects (``/setup``): :class:`~.connect.Connections`
  checks the config at once, confirms the project over Label Studio's API in the background,
  prepares it, then :meth:`Service.started` seeds it and, when people labeled tasks before it
  was connected, asks for the first run (``on_labels_found``);
- :meth:`Service.run` — one training run and the step after it (:mod:`.training_run`; a job,
  see :mod:`.jobs`);
- :meth:`Service.predict` — regions on demand for tasks Label Studio opens without predictions
  (:mod:`.on_demand`);
- :meth:`Service.seed` — the seed batch (:mod:`.seed_batch`);
- :meth:`Service.event` — what a Label Studio event changes in the state (the scheduler gets
  its part from the runtime);
- :meth:`Service.status` — what ``/status`` shows of a project's steps and budget.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from . import on_demand, seed_batch, training_run
from .connect import INSTANCE_ID, Connections
from .context import NotConnected, ServiceContext
from ..labelstudio.client import LabelStudioClient
from .serving import ServingModels
from .settings import Settings
from .state import ProjectRecord, StateStore

__all__ = ["NotConnected", "Service"]

log = logging.getLogger(__name__)


class Service:
    """The DBSAL loop for every project this backend serves. ``settings``, ``state``,
    ``client_factory`` and ``models`` make its :class:`ServiceContext`; ``instance_id`` is this
    server's id, answered by ``/health`` (how a project is confirmed)."""

    def __init__(self, settings: Settings, state: StateStore,
                 client_factory: Callable[[], LabelStudioClient] | None = None,
                 models: ServingModels | None = None, instance_id: str = INSTANCE_ID) -> None:
        self.context = ServiceContext(settings, state, client_factory, models)
        self.connections = Connections(self.context, instance_id, self.started)
        #: ``on_labels_found(project)`` asks for a run (the runtime wires its scheduler here).
        self.on_labels_found: Callable[[int], Any] | None = None

    @property
    def settings(self) -> Settings:
        return self.context.settings

    @property
    def state(self) -> StateStore:
        return self.context.state

    @property
    def client_factory(self) -> Callable[[], LabelStudioClient]:
        return self.context.client_factory

    def setup(self, project: int, schema: str) -> str:
        """``/setup``: the config checked, the model version answered at once, an unconfirmed
        project confirmed in the background."""
        return self.connections.setup(project, schema)

    def connect(self, client: LabelStudioClient, project: int) -> ProjectRecord | None:
        """Confirm and record ``project`` now (None when it did not connect this backend)."""
        return self.connections.connect(client, project)

    def started(self, client: LabelStudioClient, project: int, record: ProjectRecord) -> None:
        """A newly confirmed project: seed what is missing of the seed batch and, when people
        have already labeled tasks (before the backend was connected, no webhook tells of
        them), ask for the first run on those labels at once."""
        seeded = self.seed(client, project, list(client.tasks(project)))
        if record.checkpoint is None and seeded.get("annotated") and self.on_labels_found:
            log.info("project %d: %d tasks are already labeled: the first run starts now",
                     project, seeded["annotated"])
            self.on_labels_found(project)

    def require(self, project: int) -> ProjectRecord:
        """The record of a connected project; :class:`NotConnected` otherwise."""
        return self.context.require(project)

    def predict(self, project: int, tasks: list[dict]) -> tuple[list[dict], str]:
        """One prediction per task, in order, and the model version they carry."""
        return on_demand.predict(self.context, project, tasks)

    def run(self, project: int) -> dict[str, Any]:
        """One training run and the step after it; before any model, the seed batch."""
        return training_run.run(self.context, self.connections, project)

    def seed(self, client: LabelStudioClient, project: int,
             tasks: list[dict] | None = None) -> dict[str, Any]:
        """The seed batch first in the queue (nothing once a model exists)."""
        return seed_batch.seed(self.context, client, project, tasks)

    def event(self, project: int, action: str, task: int | None = None) -> None:
        """A Label Studio event for a connected project: an annotation answers its task's
        query; tasks created before the first model are seeded in the background."""
        record = self.require(project)
        if action.startswith("ANNOTATION") and task is not None:
            self.state.mark_answered(project, [task])
        if action == "TASKS_CREATED" and record.checkpoint is None:
            seed_batch.seed_in_background(self.context, project)

    def train_after(self, project: int) -> int:
        """Annotation events that start the project's next run: before its first model, the
        whole seed batch (the first model learns from the start the simulator measured, not
        from half of it); after, ``DBSAL_TRAIN_AFTER``. ``0`` (only Start Training) either
        way when ``DBSAL_TRAIN_AFTER`` is 0."""
        after = self.context.settings.train_after
        record = self.require(project)
        if after and record.checkpoint is None and record.seed_batch:
            return len(record.seed_batch)
        return after

    def _start(self, record) -> str:
        """How the project starts before its first model (``DBSAL_START`` for its config)."""
        try:
            polygons = self.context.config(record).polygon_name is not None
        except ValueError:  # no or a broken config (not connected yet)
            polygons = False
        return self.context.settings.start_for(polygons)

    def status(self, project: int) -> dict[str, Any]:
        """What the backend knows of a project (the ``service`` part of ``/status``)."""
        record = self.require(project)
        accuracy = self.state.prelabel_accuracy(project)
        queries = self.state.queries(project)
        ready = sum(1 for q in queries.values() if q.step == record.al_step and not q.answered)
        return {
            "title": record.title,
            "model_version": record.model_version,
            "al_step": record.al_step,
            "start": self._start(record),
            "seed_batch": list(record.seed_batch),
            "budget": self.context.budget.status(record.spent),
            "questions_ready": ready,
            "steps": [{"step": st.step, "finished_at": st.finished_at, **st.details,
                       "prelabel_accuracy": accuracy.get(st.step, {}).get("accuracy"),
                       "prelabels_judged": accuracy.get(st.step, {}).get("judged")}
                      for st in self.state.steps(project)],
        }
