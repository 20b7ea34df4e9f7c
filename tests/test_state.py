"""StateStore: round trips, restarts, transactions, validation, threads."""

import doctest
import sqlite3
import threading

import numpy as np
import pytest

from dbsal_backend import state as state_module
from dbsal_backend.state import PROJECT_FIELDS, StateStore


@pytest.fixture
def db(tmp_path):
    return tmp_path / "state.sqlite3"


@pytest.fixture
def store(db):
    with StateStore(db) as s:
        yield s


def test_empty_store(store):
    assert store.projects() == []
    assert store.get_project(1) is None
    assert store.queue(1) == []
    assert store.queried(1) == {}


def test_new_project_has_defaults(store):
    p = store.update_project(3)
    assert p["project_id"] == 3
    assert p["model_version"] is None and p["checkpoint"] is None
    assert p["al_step"] == 0 and p["budget"] is None
    assert p["training_state"] == "idle" and p["last_error"] is None and p["last_trained"] is None
    assert p["seed_batch"] == [] and p["annotations_since_run"] == 0 and p["label_config"] is None
    assert set(PROJECT_FIELDS) <= set(p)


def test_fields_round_trip_and_survive_a_restart(db):
    budget = {"unit": "superpixels", "limit": 500, "images": 4, "superpixels": 120, "pixels": 9000}
    fields = dict(
        model_version="dbsal-3", checkpoint="/models/7/step3.pt", al_step=3, budget=budget,
        training_state="failed", last_error="RuntimeError: boom", last_trained=1700000000.5,
        seed_batch=[5, 1, 9], annotations_since_run=4, label_config="<View/>",
    )
    with StateStore(db) as s:
        s.update_project(7, **fields)
        s.set_queue(7, [(40, 0.9), (41, 0.5)])
        s.record_step(7, 3, {40: [2, 1]}, budget=budget)
    with StateStore(db) as s:  # a restart
        p = s.get_project(7)
        assert {k: p[k] for k in fields} == fields
        assert s.projects() == [7]
        assert s.queue(7) == [(40, 0.9), (41, 0.5)]
        assert s.queried(7) == {40: [1, 2]}


def test_update_changes_only_the_given_fields(store):
    store.update_project(1, model_version="a", al_step=2)
    p = store.update_project(1, al_step=3)
    assert (p["model_version"], p["al_step"]) == ("a", 3)


def test_ensure_project_does_not_overwrite(store):
    assert store.ensure_project(2, model_version="first")["model_version"] == "first"
    assert store.ensure_project(2, model_version="second")["model_version"] == "first"


def test_projects_are_independent(store):
    store.update_project(1, al_step=1)
    store.set_queue(1, [(10, 1.0)])
    store.record_step(1, 1, {10: [0]})
    store.update_project(2, al_step=5)
    assert store.get_project(1)["al_step"] == 1
    assert store.queue(2) == [] and store.queried(2) == {}
    assert store.projects() == [1, 2]


def test_numpy_integers_are_accepted(store):
    store.update_project(np.int64(4), al_step=np.int32(2), seed_batch=np.array([3, 4]))
    store.set_queue(4, [(np.int64(8), np.float32(0.25))])
    store.record_step(4, np.int64(3), {np.int64(8): np.array([5, 6])})
    assert store.get_project(4)["seed_batch"] == [3, 4]
    assert store.queue(4) == [(8, 0.25)]
    assert store.queried(4, step=3) == {8: [5, 6]}


@pytest.mark.parametrize(
    "fields,error",
    [
        ({"colour": "red"}, ValueError),
        ({"training_state": "sleeping"}, ValueError),
        ({"al_step": -1}, ValueError),
        ({"al_step": 1.5}, TypeError),
        ({"al_step": True}, TypeError),
        ({"model_version": 3}, TypeError),
        ({"budget": [1, 2]}, TypeError),
        ({"budget": {"limit": float("nan")}}, TypeError),
        ({"seed_batch": "1,2"}, TypeError),
        ({"seed_batch": [1.0]}, TypeError),
        ({"last_trained": "yesterday"}, TypeError),
    ],
)
def test_bad_fields_are_refused_and_nothing_is_written(store, fields, error):
    store.update_project(1, al_step=1)
    with pytest.raises(error):
        store.update_project(1, **fields)
    assert store.get_project(1)["al_step"] == 1
    assert store.get_project(1)["training_state"] == "idle"


def test_bad_project_ids(store):
    with pytest.raises(TypeError, match="project"):
        store.get_project("7")
    with pytest.raises(TypeError, match="project"):
        store.update_project(True)


def test_queue_keeps_order_and_is_replaced(store):
    store.set_queue(1, [(3, 0.1), (1, 0.9), (2, 0.5)])
    assert store.queue(1) == [(3, 0.1), (1, 0.9), (2, 0.5)]
    store.set_queue(1, [(2, 0.7)])
    assert store.queue(1) == [(2, 0.7)]
    store.set_queue(1, [])
    assert store.queue(1) == []


@pytest.mark.parametrize(
    "items,error",
    [([(1, 0.5), (1, 0.2)], ValueError), ([(1, float("inf"))], ValueError),
     ([(1,)], TypeError), ([(1, "high")], TypeError), ([("a", 0.5)], TypeError)],
)
def test_bad_queue_leaves_the_old_one(store, items, error):
    store.set_queue(1, [(9, 0.3)])
    with pytest.raises(error):
        store.set_queue(1, items)
    assert store.queue(1) == [(9, 0.3)]


def test_record_step(store):
    budget = {"unit": "superpixels", "limit": None, "images": 2, "superpixels": 5, "pixels": 100}
    p = store.record_step(1, 1, {10: [3, 1, 3], 11: []}, queue=[(12, 0.8)], budget=budget,
                          model_version="v1")
    assert (p["al_step"], p["budget"], p["model_version"]) == (1, budget, "v1")
    assert store.queue(1) == [(12, 0.8)]
    store.record_step(1, 2, {12: [7], 10: [4]})
    assert store.queue(1) == [(12, 0.8)]  # no queue given: kept
    assert store.queried(1, step=1) == {10: [1, 3], 11: []}
    assert store.queried(1, step=2) == {10: [4], 12: [7]}
    assert store.queried(1) == {10: [1, 3, 4], 11: [], 12: [7]}  # union over steps
    store.record_step(1, 2, {12: [8]})  # recording a step again replaces it
    assert store.queried(1, step=2) == {12: [8]}
    assert store.get_project(1)["al_step"] == 2


def test_record_step_is_all_or_nothing(store):
    store.record_step(1, 1, {10: [1]}, queue=[(11, 0.5)])
    with pytest.raises(ValueError):
        store.record_step(1, 2, {11: [2]}, queue=[(12, 0.1), (12, 0.2)])
    with pytest.raises(TypeError):
        store.record_step(1, 2, {11: ["x"]})
    with pytest.raises(ValueError):
        store.record_step(1, 2, {11: [2]}, al_step=2)
    assert store.get_project(1)["al_step"] == 1
    assert store.queried(1) == {10: [1]}
    assert store.queue(1) == [(11, 0.5)]


def test_failed_transaction_rolls_back(store, monkeypatch):
    store.set_queue(1, [(1, 0.5)])

    def broken(pid, rows):
        store._conn.execute("DELETE FROM queue WHERE project_id=?", (pid,))
        raise sqlite3.OperationalError("disk went away")

    monkeypatch.setattr(store, "_write_queue", broken)
    with pytest.raises(sqlite3.OperationalError):
        store.set_queue(1, [(2, 0.1)])
    monkeypatch.undo()
    assert store.queue(1) == [(1, 0.5)]
    store.set_queue(1, [(3, 0.2)])  # the store still works
    assert store.queue(1) == [(3, 0.2)]


def test_wal_mode_and_second_connection_sees_writes(db, store):
    assert store._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.update_project(1, model_version="x")
    with StateStore(db) as other:
        assert other.get_project(1)["model_version"] == "x"
        other.update_project(1, model_version="y")
    assert store.get_project(1)["model_version"] == "y"


def test_newer_schema_is_refused(db):
    StateStore(db).close()
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version=99")
    conn.close()
    with pytest.raises(ValueError, match="schema 99"):
        StateStore(db)


def test_threads_write_without_losing_anything(store):
    n_threads, n_writes = 6, 40
    errors = []

    def work(t):
        try:
            for i in range(n_writes):
                store.update_project(t, al_step=i)
                store.set_queue(t, [(i, float(i))])
                store.record_step(t, i, {i: [t]})
                assert store.get_project(t)["al_step"] == i
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    for t in range(n_threads):
        assert store.get_project(t)["al_step"] == n_writes - 1
        assert store.queue(t) == [(n_writes - 1, float(n_writes - 1))]
        assert len(store.queried(t)) == n_writes


def test_docstring_examples():
    assert doctest.testmod(state_module).failed == 0
