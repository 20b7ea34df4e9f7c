"""One training run at a time per project, in background threads, with events coalesced.

Label Studio sends a webhook per annotation and expects an answer within a second; a training run
takes minutes. :class:`TrainingScheduler` answers at once and runs ``run_fn(project)`` in a
background thread:

- annotation events (:data:`ANNOTATION_EVENTS`) are counted; the ``train_after``-th starts a run
  (the caller may name another threshold per event: the backend's first run waits for the
  whole seed batch);
- ``START_TRAINING`` starts a run at once;
- while a run is going, events that would start one mark a single follow-up run instead, which
  starts when the current run ends (ten events during a run give one follow-up, not ten);
- other events (tasks created, project updated...) are ignored;
- an exception in ``run_fn`` is logged and recorded (state ``"failed"`` with its message) and does
  not stop later runs.

Projects are independent: each has its own counter and its own worker thread.

Examples
--------
>>> sched = TrainingScheduler(lambda project: None, train_after=2)
>>> sched.notify(1, "ANNOTATION_CREATED")
'counted'
>>> sched.notify(1, "ANNOTATION_UPDATED")
'started'
>>> sched.wait_idle(1, timeout=10)
True
>>> sched.status(1)["runs"]
1
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

#: Events that count toward ``train_after``.
ANNOTATION_EVENTS = frozenset(
    {
        "ANNOTATION_CREATED",
        "ANNOTATION_UPDATED",
        "ANNOTATION_DELETED",
        "ANNOTATIONS_CREATED",
        "ANNOTATIONS_DELETED",
    }
)
#: The event that always asks for a run.
START_TRAINING = "START_TRAINING"


@dataclass
class _Project:
    state: str = "idle"  # idle | queued | running | failed
    pending_events: int = 0  # annotation events since the last run started
    follow_up: bool = False  # one more run after the current one
    runs: int = 0  # runs finished (successful or not)
    last_error: str | None = None
    last_started: float | None = None
    last_finished: float | None = None
    last_success: float | None = None
    thread: threading.Thread | None = None

    def snapshot(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "pending_events": self.pending_events,
            "follow_up": self.follow_up,
            "runs": self.runs,
            "last_error": self.last_error,
            "last_started": self.last_started,
            "last_finished": self.last_finished,
            "last_success": self.last_success,
        }


class TrainingScheduler:
    """Runs ``run_fn(project)`` in the background, one run at a time per project.

    Parameters
    ----------
    run_fn : callable
        ``run_fn(project)`` does one training run; its return value is ignored.
    train_after : int
        Annotation events that start a run; ``0`` means only ``START_TRAINING`` starts one.
    on_change : callable, optional
        ``on_change(project, status)`` after every change of a project's status (with the dict
        :meth:`status` returns), e.g. to persist it. Called under the scheduler's lock, so calls
        arrive in order; keep it quick. Its exceptions are logged and swallowed.
    """

    def __init__(
        self,
        run_fn: Callable[[Hashable], Any],
        train_after: int = 5,
        on_change: Callable[[Hashable, dict[str, Any]], None] | None = None,
    ) -> None:
        if not callable(run_fn):
            raise TypeError("run_fn must be callable")
        self._run_fn = run_fn
        self.train_after = train_after
        self._on_change = on_change
        self._projects: dict[Hashable, _Project] = {}
        self._cond = threading.Condition()
        self._closed = False

    def notify(self, project: Hashable, event: str, train_after: int | None = None) -> str:
        """Take one Label Studio event for ``project``; ``train_after`` replaces the
        scheduler's threshold for this event (``0``: it starts no run).

        Returns
        -------
        str
            ``"started"`` (a run started now), ``"queued"`` (a run is going; a follow-up run will
            start after it), ``"counted"`` (an annotation event counted, no run yet) or
            ``"ignored"`` (not a training event, or the scheduler is shut down).
        """
        if not isinstance(event, str):
            raise TypeError(f"event must be a str, got {type(event).__name__}")
        with self._cond:
            if self._closed or (event != START_TRAINING and event not in ANNOTATION_EVENTS):
                return "ignored"
            p = self._projects.setdefault(project, _Project())
            if event == START_TRAINING:
                wants_run = True
            else:
                p.pending_events += 1
                after = self.train_after if train_after is None else train_after
                wants_run = after > 0 and p.pending_events >= after
            if p.state == "queued":  # the run has not started: it will see this event
                outcome = "queued"
            elif p.state == "running":
                p.follow_up = p.follow_up or wants_run
                outcome = "queued" if p.follow_up else "counted"
            elif wants_run:
                outcome = "started"
                self._start(project, p)
            else:
                outcome = "counted"
            self._changed(project, p)
        return outcome

    def restore(self, project: Hashable, pending_events: int = 0, last_error: str | None = None) -> None:
        """Restore a project's counter, and its failure when ``last_error`` is given, e.g. from
        a store after a restart. Only for a project with no run going."""
        if last_error is not None and not isinstance(last_error, str):
            raise TypeError(f"last_error must be a str or None, got {type(last_error).__name__}")
        with self._cond:
            if self._busy(project):
                raise RuntimeError(f"project {project!r} has a run going; cannot restore it")
            p = self._projects.setdefault(project, _Project())
            p.pending_events = pending_events
            p.state = "idle" if last_error is None else "failed"
            p.last_error = last_error

    def status(self, project: Hashable) -> dict[str, Any]:
        """The project's status.

        Returns
        -------
        dict
            ``state`` (``idle``, ``queued``, ``running`` or ``failed``), ``pending_events``,
            ``follow_up``, ``runs``, ``last_error`` and the Unix times ``last_started``,
            ``last_finished``, ``last_success`` (None when never).
        """
        with self._cond:
            return self._projects.get(project, _Project()).snapshot()

    def wait_idle(self, project: Hashable, timeout: float | None = None) -> bool:
        """Block until the project has no run going or queued; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._busy(project), timeout=timeout)

    def shutdown(self, timeout: float | None = None) -> bool:
        """Refuse new events, drop pending follow-ups, wait for running runs to end.

        Returns
        -------
        bool
            True when every run ended within ``timeout``.
        """
        with self._cond:
            self._closed = True
            for p in self._projects.values():
                p.follow_up = False
            threads = [p.thread for p in self._projects.values() if p.thread is not None]
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in threads)

    # -- internals ------------------------------------------------------------------------

    def _busy(self, project: Hashable) -> bool:
        p = self._projects.get(project)
        return p is not None and p.state in ("queued", "running")

    def _start(self, project: Hashable, p: _Project) -> None:
        """Start the worker thread; the caller holds the lock."""
        p.state = "queued"
        p.thread = threading.Thread(
            target=self._worker, args=(project, p), name=f"train-{project}", daemon=True
        )
        p.thread.start()

    def _worker(self, project: Hashable, p: _Project) -> None:
        while True:
            with self._cond:
                p.state = "running"
                p.pending_events = 0
                p.follow_up = False
                p.last_started = time.time()
                self._changed(project, p)
            logger.info("training run started for project %s", project)
            error = None
            try:
                self._run_fn(project)
            except Exception as exc:  # noqa: BLE001 - a failed run must not kill the worker
                error = f"{type(exc).__name__}: {exc}"
                logger.exception("training run failed for project %s", project)
            with self._cond:
                p.runs += 1
                p.last_finished = time.time()
                p.last_error = error
                if error is None:
                    p.last_success = p.last_finished
                    logger.info("training run finished for project %s", project)
                again = p.follow_up and not self._closed
                if not again:
                    p.state = "failed" if error else "idle"
                    p.thread = None
                    self._cond.notify_all()
                self._changed(project, p)
            if not again:
                return

    def _changed(self, project: Hashable, p: _Project) -> None:
        """Report a change to the hook; the caller holds the lock, so reports keep their order."""
        if self._on_change is None:
            return
        try:
            self._on_change(project, p.snapshot())
        except Exception:  # noqa: BLE001 - a broken hook must not break scheduling
            logger.exception("on_change hook failed for project %s", project)
