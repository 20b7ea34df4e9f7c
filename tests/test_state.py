"""Tests for dbsal_backend.server.state: typed records, steps and queries, damage, WAL."""

import json
import sqlite3
import threading

import numpy as np
import pytest

from dbsal_backend.engine.labeling_budget import Effort
from dbsal_backend.server.state import (
    TRAINING_STATES,
    DamagedDatabase,
    DamagedRecord,
    ProjectRecord,
    QueryRecord,
    StateStore,
    StepRecord,
)


@pytest.fixture
def db(tmp_path):
    return tmp_path / "state.sqlite3"


@pytest.fixture
def store(db):
    store = StateStore(db)
    yield store
    store.close()


def raw(db, sql, *args):
    """Run SQL on the file with plain sqlite3, as another program (or damage) would."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


# ---------------------------------------------------------------- projects


def test_an_empty_store(db, store):
    assert store.projects() == [] and store.get(1) is None
    assert store.queries(1) == {} and store.steps(1) == []
    assert store.prelabel_accuracy(1) == {}


def test_a_new_project_has_the_defaults(store):
    record = store.update(3)
    assert record == ProjectRecord(3, updated_at=record.updated_at)
    assert record.updated_at > 0 and record.training_state == "idle"
    assert record.seed_batch == () and record.spent == Effort()


def test_typed_fields_round_trip_and_survive_a_restart(db):
    fields = dict(connected=True, title="Weeds", label_config="<View/>", model_version="dbsal-3",
                  checkpoint="7/step3.pt", al_step=3, training_state="failed",
                  last_error="RuntimeError: boom", last_trained=1700000000.5,
                  seed_batch=(5, 1, 9), annotations_since_run=4,
                  spent=Effort(images=4, regions=120, pixels=9000))
    store = StateStore(db)
    written = store.update(7, **fields)
    store.close()
    store = StateStore(db)  # a restart
    record = store.get(7)
    assert record == written
    assert {name: getattr(record, name) for name in fields} == fields
    assert type(record.connected) is bool and type(record.seed_batch) is tuple
    assert isinstance(record.spent, Effort)
    assert store.projects() == [7]
    store.close()


def test_update_changes_only_the_given_fields(store):
    store.update(1, model_version="a", al_step=2)
    record = store.update(1, al_step=3)
    assert (record.model_version, record.al_step) == ("a", 3)
    assert store.get(1) == record


def test_numpy_ints_are_accepted(store):
    # project ids are checked where they enter (server); the values written are normalised
    store.update(4, seed_batch=np.array([3, 4]), al_step=np.int32(2))
    record = store.get(4)
    assert record.seed_batch == (3, 4) and record.al_step == 2 and type(record.al_step) is int


@pytest.mark.parametrize("fields, error", [
    ({"colour": "red"}, ValueError),
    ({"project_id": 9}, ValueError),
    ({"updated_at": 1.0}, ValueError),
    ({"training_state": "sleeping"}, ValueError),
    ({"seed_batch": [1, 0]}, ValueError),
    ({"seed_batch": [1.5]}, TypeError),
    ({"seed_batch": [True]}, TypeError),
    ({"al_step": -1}, ValueError),
    ({"al_step": 1.5}, TypeError),
    ({"annotations_since_run": True}, TypeError),
    ({"model_version": 3}, TypeError),
    ({"label_config": b"<View/>"}, TypeError),
    ({"last_trained": "yesterday"}, TypeError),
    ({"spent": {"regions": 3}}, TypeError),
    ({"spent": Effort(regions=-1)}, TypeError),
    ({"spent": Effort(regions=2.5)}, TypeError),
])
def test_bad_fields_are_refused_and_nothing_is_written(store, fields, error):
    store.update(1, al_step=1)
    with pytest.raises(error):
        store.update(1, **fields)
    record = store.get(1)  # never a damaged record: bad values are refused when written
    assert (record.al_step, record.training_state, record.seed_batch) == (1, "idle", ())


def test_training_states():
    assert TRAINING_STATES == ("idle", "queued", "running", "failed")


def test_projects_are_independent(db, store):
    store.update(1, al_step=1)
    store.record_step(1, 1, [QueryRecord(10, 1, "k", ((0, (1,), 0.5),))], {"n": 1})
    store.update(2, al_step=5)
    assert store.queries(2) == {} and store.steps(2) == []
    assert store.projects() == [1, 2] and store.get(1).al_step == 1
    assert len(store.queries(1)) == len(store.steps(1)) == 1 and store.get(2).al_step == 5


# ---------------------------------------------------------------- steps and queries


def _query(task, step, *regions):
    return QueryRecord(task, step, "slic-key", tuple(regions))


def test_record_step_stores_queries_history_and_changes(db, store):
    queries = [_query(10, 1, (2, (4, 5), 0.25), (0, (7,), 0.5)), _query(11, 1)]
    record = store.record_step(1, 1, queries, {"queried": 2, "regions": 2}, model_version="v1")
    assert (record.al_step, record.model_version) == (1, "v1")
    assert store.queries(1) == {10: queries[0], 11: queries[1]}
    (step,) = store.steps(1)
    assert isinstance(step, StepRecord)
    assert (step.step, step.details) == (1, {"queried": 2, "regions": 2}) and step.finished_at > 0
    # The next step replaces the queries of the same tasks, keeps the others.
    store.record_step(1, 2, [_query(11, 2, (1, (3,), 0.75))], {"queried": 1})
    assert store.queries(1)[10] == queries[0]
    assert store.queries(1)[11] == _query(11, 2, (1, (3,), 0.75))
    assert [s.step for s in store.steps(1)] == [1, 2]
    assert store.get(1).al_step == 2


def test_record_step_is_all_or_nothing(db, store):
    store.record_step(1, 1, [_query(10, 1)], {})
    with pytest.raises(ValueError):
        store.record_step(1, 2, [_query(11, 2)], {}, training_state="sleeping")
    with pytest.raises(TypeError):
        store.record_step(1, 2, [_query(11, 2)], {"x": object()})
    with pytest.raises(TypeError):  # a query that cannot be stored refuses the whole step
        store.record_step(1, 2, [_query(11, 2, (0, (1,), object()))], {})
    assert store.queries(1) == {10: _query(10, 1)}
    assert [s.step for s in store.steps(1)] == [1]


def test_add_queries_and_answers(store):
    store.add_queries(1, [_query(10, 0, (1, (2,), 0.5)), _query(11, 0)])
    assert store.queries(1, answered=False).keys() == {10, 11}
    store.mark_answered(1, [10, 99])  # a task without a query is ignored
    assert store.queries(1, answered=True).keys() == {10}
    assert store.queries(1, answered=False).keys() == {11}
    assert store.queries(1)[10].answered is True
    store.set_prelabels(1, 11, right=3, judged=4)
    query = store.queries(1)[11]
    assert (query.answered, query.prelabels_right, query.prelabels_judged) == (True, 3, 4)


def test_prelabel_accuracy_per_step(store):
    store.record_step(1, 1, [_query(10, 1), _query(11, 1), _query(12, 1)], {})
    store.record_step(1, 2, [_query(20, 2), _query(21, 2)], {})
    store.set_prelabels(1, 10, 3, 4)
    store.set_prelabels(1, 11, 1, 4)
    store.mark_answered(1, [12])  # answered, not measured: not counted
    store.set_prelabels(1, 20, 0, 0)
    assert store.prelabel_accuracy(1) == {
        1: {"right": 4, "judged": 8, "tasks": 2, "accuracy": 0.5},
        2: {"right": 0, "judged": 0, "tasks": 1, "accuracy": None}}


# ---------------------------------------------------------------- damage


@pytest.mark.parametrize("column, garbage", [
    ("spent", "not json"), ("spent", "[1, 2]"), ("spent", '{"clicks": 3}'),
    ("spent", '{"images": "3"}'), ("spent", '{"regions": -1}'), ("spent", "null"),
    ("seed_batch", "{not json"), ("seed_batch", '{"a": 1}'), ("seed_batch", '"12"'),
    ("seed_batch", "[1.7]"), ("seed_batch", "[true]"), ("seed_batch", "[0]"),
    ("seed_batch", "5"),
    ("training_state", "sleeping"), ("al_step", -1), ("connected", "yes"),
    ("label_config", b"\xff\xfe"), ("last_trained", "yesterday"), ("title", b"x"),
])
def test_a_damaged_row_fails_alone(db, store, column, garbage):
    store.update(1, model_version="ok")
    store.update(2, seed_batch=(4,), spent=Effort(1, 2, 3))
    raw(db, f"UPDATE projects SET {column}=? WHERE project_id=2", garbage)
    with pytest.raises(DamagedRecord) as info:
        store.get(2)
    assert info.value.project == 2 and "project 2" in str(info.value)
    assert store.get(1).model_version == "ok"  # other projects still read
    assert store.projects() == [1, 2]
    store.mark_failed(2, "damaged state")  # works without reading the row
    assert raw(db, "SELECT training_state, last_error FROM projects WHERE project_id=2") == [
        ("failed", "damaged state")]


def test_a_file_that_is_not_a_database(tmp_path):
    path = tmp_path / "state.sqlite3"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(DamagedDatabase) as info:
        StateStore(path)
    message = str(info.value)
    assert str(path) in message
    assert f"mv {path} {path}.damaged" in message and "start again" in message


def test_an_earlier_file_loses_its_unread_table_of_scores(db):
    StateStore(db).close()
    raw(db, "CREATE TABLE priorities (project_id INTEGER, task_id INTEGER, score REAL)")
    StateStore(db).close()
    assert raw(db, "SELECT name FROM sqlite_master WHERE name='priorities'") == []


def test_a_newer_schema_is_refused_with_advice(db):
    StateStore(db).close()
    raw(db, "PRAGMA user_version=99")
    with pytest.raises(DamagedDatabase, match="schema version 99") as info:
        StateStore(db)
    assert f"mv {db} {db}.old" in str(info.value)


# ---------------------------------------------------------------- concurrency


def test_wal_mode_and_a_second_store_sees_the_writes(db, store):
    assert raw(db, "PRAGMA journal_mode") == [("wal",)]
    store.update(1, model_version="x")
    other = StateStore(db)
    try:
        assert other.get(1).model_version == "x"
        other.record_step(1, 1, [_query(5, 1)], {"by": "other"})
        other.update(1, model_version="y")
    finally:
        other.close()
    assert store.get(1).model_version == "y"
    assert store.queries(1) == {5: _query(5, 1)} and store.steps(1)[0].details == {"by": "other"}


def test_threads_write_without_losing_anything(db, store):
    n_threads, n_writes = 4, 25
    errors = []

    def work(project):
        try:
            for i in range(1, n_writes + 1):
                store.record_step(project, i, [_query(i, i)], {"i": i})
                store.mark_answered(project, [i])
                assert store.get(project).al_step == i
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(p,)) for p in range(1, n_threads + 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for project in range(1, n_threads + 1):
        assert store.get(project).al_step == n_writes
        assert len(store.queries(project, answered=True)) == n_writes
        assert [s.details for s in store.steps(project)] == [{"i": i}
                                                             for i in range(1, n_writes + 1)]


def test_json_details_are_plain_json(store):
    store.record_step(1, 1, [], {"median": None, "list": [1, 2]})
    assert json.loads(json.dumps(store.steps(1)[0].details)) == {"median": None, "list": [1, 2]}
