"""What lives once per server process: settings, state, service, jobs, the training scheduler.

:func:`build_runtime` opens the state store in ``MODEL_DIR`` (a damaged file stops the server
with one message saying what to do), checks that the folders it writes are writable, recovers
from the last stop (a run that was going when the process died is reported as interrupted;
the previous model keeps serving) and wires the scheduler to the job runner.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from datetime import datetime, timezone
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .connect import INSTANCE_ID
from .jobs import Jobs
from .scheduler import START_TRAINING, TrainingScheduler
from .service import Service
from .settings import Settings
from .state import DamagedRecord, StateStore

__all__ = ["Runtime", "build_runtime", "configure_threads", "get_runtime", "set_runtime"]

logger = logging.getLogger(__name__)

#: Name of the state database inside ``MODEL_DIR``.
STATE_FILE = "state.sqlite3"


def configure_threads() -> None:
    """One torch thread unless ``OMP_NUM_THREADS`` says otherwise: on a small machine shared
    with Label Studio, OpenMP threads spin against the other processes (MC dropout measured
    30x slower with 2 threads than with 1 under load)."""
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or 1))


def writable(folder: Path) -> str | None:
    """None when ``folder`` can be created and written, else the reason."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder):
            pass
    except OSError as exc:
        return f"{folder} is not writable ({exc.strerror or exc})"
    return None


@dataclass
class Runtime:
    """Everything that lives once per process."""

    settings: Settings
    state: StateStore
    service: Service
    scheduler: TrainingScheduler
    problems: list[str] = field(default_factory=list)

    def event(self, project: int, action: str, task: int | None = None) -> str:
        """A Label Studio event for a connected project: the service notes what it changes,
        the scheduler counts it toward the next run."""
        self.service.event(project, action, task)
        return self.scheduler.notify(project, action, self.service.train_after(project))

    def training(self, project: int) -> dict[str, Any]:
        """What ``/is_training`` answers, from the project's record alone."""
        record = self.service.require(project)
        return {"is_training": record.training_state in ("queued", "running"),
                "model_version": record.model_version}

    def status(self, project: int) -> dict[str, Any]:
        """Everything ``/status`` shows for a connected project."""
        record = self.service.require(project)
        runs = self.scheduler.status(project)
        after = self.service.train_after(project)
        service = self.service.status(project)
        return {
            "project": project,
            "connected": record.connected,
            "model_version": record.model_version,
            "training_state": record.training_state,
            "follow_up_run": runs["follow_up"],
            "annotations_since_run": record.annotations_since_run,
            "train_after": after,
            "last_error": record.last_error,
            "last_trained": (datetime.fromtimestamp(record.last_trained, timezone.utc).isoformat()
                             if record.last_trained else None),
            **service,
            "what_to_do": _advice(record, after, service["start"]),
        }

    def health(self) -> dict[str, Any]:
        """What ``/health`` answers (no secrets): up, this instance's id, known problems."""
        problems = list(self.problems)
        for cache in (self.service.context.superpixels,):
            if cache.problem:
                problems.append(cache.problem)
        return {"status": "UP", "model_class": "DBSALModel", "instance": INSTANCE_ID,
                "problems": problems}


def build_runtime(settings: Settings, client_factory: Callable[[], Any] | None = None,
                  in_process: bool = False) -> Runtime:
    """Open the state, build the service, the job runner and the scheduler.

    ``client_factory`` replaces the Label Studio client and ``in_process`` runs training in
    this process instead of a child (both for tests).
    """
    configure_threads()
    problem = writable(settings.model_dir)
    if problem:
        raise SystemExit(f"MODEL_DIR: {problem}; the backend keeps its state and models there")
    state = StateStore(settings.model_dir / STATE_FILE)
    service = Service(settings, state, client_factory)
    problems = [p for p in (writable(settings.model_dir / "images"),) if p]
    jobs = Jobs(settings, INSTANCE_ID)

    def persist(project: Hashable, status: dict[str, Any]) -> None:
        fields: dict[str, Any] = {"training_state": status["state"],
                                  "annotations_since_run": status["pending_events"]}
        if status["last_finished"] is not None:
            fields["last_error"] = status["last_error"]
        try:
            state.update(project, **fields)
        except DamagedRecord:
            state.mark_failed(project, status["last_error"] or "damaged state")

    scheduler = TrainingScheduler(service.run if in_process else jobs.run,
                                  train_after=settings.train_after,
                                  on_change=persist)
    service.on_labels_found = lambda project: scheduler.notify(project, START_TRAINING)
    for project in state.projects():
        try:
            record = state.get(project)
        except DamagedRecord as exc:
            logger.error("%s", exc)
            state.mark_failed(project, str(exc))
            scheduler.restore(project, 0, last_error=str(exc))
            continue
        error = record.last_error if record.training_state == "failed" else None
        if record.training_state in ("queued", "running"):
            error = "interrupted: the backend stopped during a training run; the previous " \
                    "model serves until the next run"
            state.update(project, training_state="failed", last_error=error)
        scheduler.restore(project, record.annotations_since_run, last_error=error)
    if not settings.auth:
        logger.warning("BASIC_AUTH_USER/BASIC_AUTH_PASS are not set: every route is OPEN to "
                       "anyone who can reach %s:%d; set them (and the same credentials in the "
                       "project's Model settings) before exposing the backend on a network",
                       settings.host, settings.port)
    if not settings.api_key:
        logger.warning("LABEL_STUDIO_API_KEY is not set: the backend cannot read tasks or "
                       "write predictions; set it to a legacy token or a personal access token "
                       "(Label Studio: Account & Settings)")
    for problem in problems:
        logger.warning("%s", problem)
    return Runtime(settings, state, service, scheduler, problems)


def _advice(record, train_after: int, start: str = "images") -> str:
    """One sentence for the person reading ``/status`` (``train_after``: the annotations that
    start the project's next run; ``start``: how the project starts, ``DBSAL_START``)."""
    if record.training_state == "failed" and record.last_error:
        return f"the last run failed ({record.last_error[:200]}); fix the cause, then press " \
               f"Start Training in the project's Model settings"
    if record.checkpoint is None and record.training_state in ("queued", "running"):
        return "the first model is training on the tasks labeled so far; its regions follow " \
               "when it is done: keep labeling the seed tasks meanwhile"
    if record.checkpoint is None:
        when = (f"after {train_after} annotations (the whole seed batch) or on Start Training"
                if train_after else "on Start Training")
        what = ("give each gray region of the seed tasks its class" if start == "regions"
                else "label the seed tasks completely")
        return f"{what} (Label All Tasks serves them first); the first training run starts " \
               f"{when}"
    if record.training_state in ("queued", "running"):
        return "a training run is going; keep labeling: the current model still makes regions"
    return "press Label All Tasks: check each region as the project's instructions say; " \
           "areas without a region need nothing"


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def get_runtime() -> Runtime:
    """The process-wide runtime (built by :func:`set_runtime` or on first use from the
    environment)."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = build_runtime(Settings.from_env())
        return _runtime


def set_runtime(runtime: Runtime | None) -> None:
    """Replace the process-wide runtime (None: build again on next use)."""
    global _runtime
    with _runtime_lock:
        _runtime = runtime
