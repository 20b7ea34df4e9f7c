"""TrainingScheduler with a fake run_fn: one run at a time, coalescing, counting, failures."""

import doctest
import threading

import pytest

from dbsal_backend.server import scheduler as scheduler_module
from dbsal_backend.server.scheduler import ANNOTATION_EVENTS, START_TRAINING, TrainingScheduler
from dbsal_backend.server.settings import Settings
from dbsal_backend.server.state import StateStore

WAIT = 10.0  # seconds; generous, only reached when something is broken


class FakeRun:
    """run_fn that records calls and blocks each run until released."""

    def __init__(self, fail_with=None):
        self.calls = []
        self.active = 0
        self.max_active = 0
        self.fail_with = fail_with
        self.started = threading.Semaphore(0)
        self.release = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, project):
        with self._lock:
            self.calls.append(project)
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        self.started.release()
        try:
            assert self.release.wait(WAIT), "run was never released"
            if self.fail_with is not None:
                raise self.fail_with
        finally:
            with self._lock:
                self.active -= 1

    def wait_started(self):
        assert self.started.acquire(timeout=WAIT), "run did not start"


def test_start_training_runs_in_the_background():
    run = FakeRun()
    sched = TrainingScheduler(run)
    assert sched.notify(1, START_TRAINING) == "started"
    run.wait_started()
    assert sched.status(1)["state"] == "running"
    assert not sched.wait_idle(1, timeout=0.05)
    run.release.set()
    assert sched.wait_idle(1, timeout=WAIT)
    status = sched.status(1)
    assert status["state"] == "idle" and status["runs"] == 1 and status["last_error"] is None
    assert status["last_success"] is not None and run.calls == [1]


def test_one_run_at_a_time_and_ten_events_give_one_follow_up():
    run = FakeRun()
    sched = TrainingScheduler(run, train_after=1)
    assert sched.notify(1, START_TRAINING) == "started"
    run.wait_started()
    answers = [sched.notify(1, event) for event in ["ANNOTATION_CREATED"] * 9 + [START_TRAINING]]
    assert answers == ["queued"] * 10
    assert sched.status(1)["follow_up"] is True
    run.release.set()
    assert sched.wait_idle(1, timeout=WAIT)
    assert run.calls == [1, 1]  # the first run and exactly one follow-up
    assert run.max_active == 1
    assert sched.status(1)["runs"] == 2


def test_events_during_a_run_below_the_threshold_do_not_queue_a_run():
    run = FakeRun()
    sched = TrainingScheduler(run, train_after=3)
    sched.notify(1, START_TRAINING)
    run.wait_started()
    assert sched.notify(1, "ANNOTATION_UPDATED") == "counted"
    assert sched.notify(1, "ANNOTATION_DELETED") == "counted"
    assert sched.status(1)["follow_up"] is False
    assert sched.notify(1, "ANNOTATIONS_CREATED") == "queued"  # third: follow-up
    run.release.set()
    assert sched.wait_idle(1, timeout=WAIT)
    assert len(run.calls) == 2
    assert sched.status(1)["pending_events"] == 0


def test_annotation_events_count_up_to_the_threshold():
    run = FakeRun()
    run.release.set()
    sched = TrainingScheduler(run, train_after=3)
    assert [sched.notify(1, "ANNOTATION_CREATED") for _ in range(2)] == ["counted", "counted"]
    assert sched.status(1)["pending_events"] == 2 and run.calls == []
    assert sched.notify(1, "ANNOTATION_CREATED") == "started"
    assert sched.wait_idle(1, timeout=WAIT)
    assert run.calls == [1]
    assert sched.status(1)["pending_events"] == 0  # reset when the run started
    assert sched.notify(1, "ANNOTATIONS_DELETED") == "counted"


def test_the_caller_can_name_the_threshold_of_an_event():
    runs = []
    sched = TrainingScheduler(runs.append, train_after=5)
    assert [sched.notify(1, "ANNOTATION_CREATED", 3) for _ in range(3)] == \
        ["counted", "counted", "started"]
    assert sched.wait_idle(1, timeout=10) and runs == [1]
    assert sched.notify(1, "ANNOTATION_CREATED", 0) == "counted"  # 0: no run from counting
    assert sched.notify(1, "START_TRAINING", 0) == "started"
    assert sched.wait_idle(1, timeout=10) and runs == [1, 1]


def test_every_annotation_event_counts_and_others_are_ignored():
    run = FakeRun()
    run.release.set()
    sched = TrainingScheduler(run, train_after=100)
    for event in sorted(ANNOTATION_EVENTS):
        assert sched.notify(1, event) == "counted"
    for event in ["TASKS_CREATED", "TASKS_DELETED", "PROJECT_UPDATED", "SOMETHING_NEW", ""]:
        assert sched.notify(1, event) == "ignored"
    assert sched.status(1)["pending_events"] == len(ANNOTATION_EVENTS)
    assert run.calls == []


def test_train_after_zero_trains_only_on_request():
    run = FakeRun()
    run.release.set()
    sched = TrainingScheduler(run, train_after=0)
    assert all(sched.notify(1, "ANNOTATION_CREATED") == "counted" for _ in range(20))
    assert run.calls == []
    assert sched.notify(1, START_TRAINING) == "started"
    assert sched.wait_idle(1, timeout=WAIT) and run.calls == [1]


def test_failure_is_recorded_and_the_next_run_works():
    run = FakeRun(fail_with=RuntimeError("out of memory"))
    run.release.set()
    sched = TrainingScheduler(run)
    sched.notify(1, START_TRAINING)
    assert sched.wait_idle(1, timeout=WAIT)
    status = sched.status(1)
    assert status["state"] == "failed"
    assert status["last_error"] == "RuntimeError: out of memory"
    assert status["last_success"] is None and status["runs"] == 1
    run.fail_with = None
    assert sched.notify(1, START_TRAINING) == "started"
    assert sched.wait_idle(1, timeout=WAIT)
    status = sched.status(1)
    assert status["state"] == "idle" and status["last_error"] is None and status["runs"] == 2


def test_a_failed_run_still_runs_its_follow_up():
    run = FakeRun(fail_with=ValueError("bad data"))
    sched = TrainingScheduler(run)
    sched.notify(1, START_TRAINING)
    run.wait_started()
    sched.notify(1, START_TRAINING)
    run.release.set()
    assert sched.wait_idle(1, timeout=WAIT)
    assert len(run.calls) == 2 and sched.status(1)["state"] == "failed"


def test_projects_are_independent():
    blocked = threading.Event()
    calls = []

    def run_fn(project):
        calls.append(project)
        if project == "a":
            assert blocked.wait(WAIT)

    sched = TrainingScheduler(run_fn, train_after=2)
    assert sched.notify("a", START_TRAINING) == "started"
    assert sched.notify("b", "ANNOTATION_CREATED") == "counted"
    assert sched.status("a")["pending_events"] == 0
    assert sched.notify("b", "ANNOTATION_CREATED") == "started"
    assert sched.wait_idle("b", timeout=WAIT)  # b finished while a still runs
    assert sched.status("a")["state"] in ("queued", "running")
    assert sched.status("b")["state"] == "idle" and sched.status("a")["follow_up"] is False
    blocked.set()
    assert sched.wait_idle("a", timeout=WAIT)
    assert sorted(calls) == ["a", "b"]


def test_on_change_reports_in_order_and_its_errors_are_swallowed():
    seen = []

    def on_change(project, status):
        seen.append((project, status["state"], status["pending_events"]))
        raise OSError("disk full")

    sched = TrainingScheduler(lambda p: None, train_after=2, on_change=on_change)
    sched.notify(5, "ANNOTATION_CREATED")
    sched.notify(5, "ANNOTATION_CREATED")
    assert sched.wait_idle(5, timeout=WAIT)
    assert seen == [(5, "idle", 1), (5, "queued", 2), (5, "running", 0), (5, "idle", 0)]
    assert sched.status(5)["runs"] == 1


def test_restore_sets_the_counter_and_the_failure():
    sched = TrainingScheduler(lambda p: None, train_after=3)
    sched.restore(1, 2)
    sched.restore(2, 0, last_error="interrupted")
    assert sched.status(2)["state"] == "failed" and sched.status(2)["last_error"] == "interrupted"
    assert sched.notify(2, "ANNOTATION_CREATED") == "counted"
    assert sched.status(2)["state"] == "failed"  # until a run ends
    assert sched.notify(1, "ANNOTATION_CREATED") == "started"
    assert sched.wait_idle(1, timeout=WAIT)
    with pytest.raises(ValueError):  # a count restored from the state is one the state took
        StateStore(":memory:").update(1, annotations_since_run=-1)


def test_restore_refuses_a_busy_project():
    run = FakeRun()
    sched = TrainingScheduler(run)
    sched.notify(1, START_TRAINING)
    run.wait_started()
    with pytest.raises(RuntimeError, match="run going"):
        sched.restore(1, 0)
    run.release.set()
    assert sched.wait_idle(1, timeout=WAIT)


def test_shutdown_waits_drops_follow_ups_and_refuses_events():
    run = FakeRun()
    sched = TrainingScheduler(run)
    sched.notify(1, START_TRAINING)
    run.wait_started()
    sched.notify(1, START_TRAINING)  # a follow-up, dropped by shutdown
    assert sched.shutdown(timeout=0.05) is False  # still running
    run.release.set()
    assert sched.shutdown(timeout=WAIT) is True
    assert run.calls == [1]
    assert sched.notify(1, START_TRAINING) == "ignored"


def test_unknown_project_status_is_idle():
    status = TrainingScheduler(lambda p: None).status(42)
    assert status["state"] == "idle" and status["runs"] == 0 and status["last_error"] is None


def test_bad_arguments():
    with pytest.raises(TypeError):
        TrainingScheduler(run_fn=None)


@pytest.mark.parametrize("raw", ["-1", "2.5"])
def test_train_after_is_checked_in_the_settings(raw):
    with pytest.raises(ValueError, match="DBSAL_TRAIN_AFTER"):
        Settings.from_env({"DBSAL_TRAIN_AFTER": raw})


def test_bad_event_type():
    with pytest.raises(TypeError, match="event"):
        TrainingScheduler(lambda p: None).notify(1, None)


def test_docstring_examples():
    assert doctest.testmod(scheduler_module).failed == 0
