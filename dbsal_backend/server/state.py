"""Per-project state of the backend in one SQLite file, as typed records.

What survives a restart: whether a project is confirmed as connected, its label config, model
version and checkpoint (a path relative to ``MODEL_DIR``, so a copied folder serves its own
models), the active-learning step, the training state and last error, the seed batch, the
annotation events since the last run, the labeling effort measured at the last run, each task's
last query (its regions and, once answered, how many pre-labels were right) and a history of
steps. A step's task scores live in Label Studio (the predictions' scores), not here.

One connection guarded by a lock serves every thread; the database runs in WAL mode with a busy
timeout, so a training job in another process writes while the server reads. Every write is one
transaction.

A row that cannot be decoded raises :class:`DamagedRecord` for that project only; a file that
is not a readable database raises :class:`DamagedDatabase` with what to do.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from os import PathLike
from typing import Any

from ..engine.checks import check_id, is_int, is_number
from ..engine.labeling_budget import Effort

__all__ = ["DamagedDatabase", "DamagedRecord", "ProjectRecord", "QueryRecord", "StateStore",
           "StepRecord", "TRAINING_STATES"]

#: Values of :attr:`ProjectRecord.training_state`.
TRAINING_STATES = ("idle", "queued", "running", "failed")

SCHEMA_VERSION = 2
# Files written before 2026-12-06 also hold a table of the last step's task scores that nothing
# read; opening one drops it.

_SCHEMA = """
CREATE TABLE IF NOT EXISTS projects (
    project_id INTEGER PRIMARY KEY,
    connected INTEGER NOT NULL DEFAULT 0,
    title TEXT,
    label_config TEXT,
    model_version TEXT,
    checkpoint TEXT,
    al_step INTEGER NOT NULL DEFAULT 0,
    training_state TEXT NOT NULL DEFAULT 'idle',
    last_error TEXT,
    last_trained REAL,
    seed_batch TEXT NOT NULL DEFAULT '[]',
    annotations_since_run INTEGER NOT NULL DEFAULT 0,
    spent TEXT NOT NULL DEFAULT '{}',
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS queries (
    project_id INTEGER NOT NULL,
    task_id INTEGER NOT NULL,
    step INTEGER NOT NULL,
    superpixels TEXT NOT NULL,
    regions TEXT NOT NULL,
    answered INTEGER NOT NULL DEFAULT 0,
    prelabels_right INTEGER,
    prelabels_judged INTEGER,
    PRIMARY KEY (project_id, task_id)
);
CREATE TABLE IF NOT EXISTS steps (
    project_id INTEGER NOT NULL,
    step INTEGER NOT NULL,
    finished_at REAL NOT NULL,
    details TEXT NOT NULL,
    PRIMARY KEY (project_id, step)
);
DROP TABLE IF EXISTS priorities
"""

class DamagedRecord(RuntimeError):
    """A project's row holds values this version cannot read."""

    def __init__(self, project: int, reason: str) -> None:
        super().__init__(f"the state of project {project} is damaged ({reason}); remove the "
                         f"project from the backend (reconnect it in Label Studio) to start over")
        self.project = project


class DamagedDatabase(RuntimeError):
    """The state file is not a database this version can read."""


@dataclass(frozen=True)
class ProjectRecord:
    """One project's state (see the module docstring)."""

    project_id: int
    connected: bool = False
    title: str | None = None
    label_config: str | None = None
    model_version: str | None = None
    checkpoint: str | None = None
    al_step: int = 0
    training_state: str = "idle"
    last_error: str | None = None
    last_trained: float | None = None
    seed_batch: tuple[int, ...] = ()
    annotations_since_run: int = 0
    spent: Effort = field(default_factory=Effort)
    updated_at: float = 0.0


@dataclass(frozen=True)
class QueryRecord:
    """A task's last query: step, the superpixel settings (``SlicParams.key()``), regions as
    ``(pre-label, superpixel ids, confidence)``, whether it was answered and, once measured,
    how many pre-labels were right."""

    task_id: int
    step: int
    superpixels: str
    regions: tuple[tuple[int, tuple[int, ...], float], ...]
    answered: bool = False
    prelabels_right: int | None = None
    prelabels_judged: int | None = None

    @classmethod
    def of(cls, query: Any, step: int, superpixels: str) -> QueryRecord:
        """The record of an :class:`~dbsal_backend.engine.active.Query` asked at ``step``."""
        return cls(int(query.key), step, superpixels,
                   tuple((r.label, r.superpixels, round(r.confidence, 4))
                         for r in query.regions))


@dataclass(frozen=True)
class StepRecord:
    """One finished step: when, and what it did (a JSON-ready dict)."""

    step: int
    finished_at: float
    details: dict[str, Any]


_INSERT_QUERY = ("INSERT OR REPLACE INTO queries (project_id, task_id, step, superpixels, "
                 "regions) VALUES (?, ?, ?, ?, ?)")


def _query_rows(pid: int, queries: Iterable[QueryRecord]) -> list[tuple]:
    return [(pid, q.task_id, q.step, q.superpixels, json.dumps(
        [[label, list(ids), confidence] for label, ids, confidence in q.regions]))
        for q in queries]


_TEXT_FIELDS = ("title", "label_config", "model_version", "checkpoint", "last_error")


def _encode(name: str, value: Any) -> Any:
    """A field's value as stored; refuses values :func:`_decode` would call damaged."""
    if name == "seed_batch":
        return json.dumps([check_id(v, "task") for v in value])
    if name == "spent":
        if not isinstance(value, Effort) or not all(
                type(v) is int and v >= 0 for v in value.to_dict().values()):
            raise TypeError(f"spent must be an Effort of int counts >= 0, got {value!r}")
        return json.dumps(value.to_dict())
    if name == "connected":
        return int(bool(value))
    if name == "training_state" and value not in TRAINING_STATES:
        raise ValueError(f"training_state must be one of {TRAINING_STATES}, got {value!r}")
    if name in ("al_step", "annotations_since_run"):
        if not is_int(value):
            raise TypeError(f"{name} must be an int, got {value!r}")
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value!r}")
        return int(value)
    if name in _TEXT_FIELDS and value is not None and not isinstance(value, str):
        raise TypeError(f"{name} must be a str or None, got {type(value).__name__}")
    if name == "last_trained" and value is not None:
        if not is_number(value):
            raise TypeError(f"last_trained must be a number or None, got {value!r}")
        return float(value)
    return value


def _encode_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    """Project fields as stored (see :meth:`StateStore.update`); raises for unknown fields."""
    allowed = {f.name for f in fields(ProjectRecord)} - {"project_id", "updated_at"}
    unknown = set(changes) - allowed
    if unknown:
        raise ValueError(f"unknown project field(s) {sorted(unknown)}")
    return {k: _encode(k, v) for k, v in changes.items()}


def _decode(row: sqlite3.Row) -> ProjectRecord:
    data = dict(row)
    project = data["project_id"]
    try:
        seed_batch = json.loads(data["seed_batch"])
        if not isinstance(seed_batch, list):
            raise ValueError("seed_batch is not a list")
        data["seed_batch"] = tuple(check_id(v, "task") for v in seed_batch)
        spent = json.loads(data["spent"])
        if not isinstance(spent, dict) or not all(
                type(v) is int and v >= 0 for v in spent.values()):
            raise ValueError("spent is not a dict of counts")
        data["spent"] = Effort(**spent)
        if data["connected"] not in (0, 1):
            raise ValueError(f"connected is {data['connected']!r}")
        data["connected"] = bool(data["connected"])
        for name in ("last_trained", "updated_at"):
            if data[name] is not None and type(data[name]) not in (int, float):
                raise ValueError(f"{name} is not a number")
        record = ProjectRecord(**data)
        if record.training_state not in TRAINING_STATES:
            raise ValueError(f"unknown training state {record.training_state!r}")
        for name in ("al_step", "annotations_since_run"):
            if not isinstance(getattr(record, name), int) or getattr(record, name) < 0:
                raise ValueError(f"{name} is {getattr(record, name)!r}")
        for name in _TEXT_FIELDS:
            if getattr(record, name) is not None and not isinstance(getattr(record, name), str):
                raise ValueError(f"{name} is not text")
    except (TypeError, ValueError) as exc:
        raise DamagedRecord(project, str(exc)) from None
    return record


class StateStore:
    """SQLite-backed state of every project.

    Parameters
    ----------
    path : str or path-like
        Database file, created with its schema when missing; ``":memory:"`` for a private store.
    timeout : float
        Seconds to wait for another process's write lock.

    Raises
    ------
    DamagedDatabase
        When the file is not a database this version can read (the message says what to do).
    """

    def __init__(self, path: str | PathLike[str], timeout: float = 10.0) -> None:
        self.path = str(path)
        self._lock = threading.RLock()
        try:
            self._conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None,
                                         check_same_thread=False)
            self._conn.row_factory = sqlite3.Row
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise DamagedDatabase(
                    f"the state database {self.path} has schema version {version}; this version "
                    f"reads {SCHEMA_VERSION}. Move it away (mv {self.path} {self.path}.old) to "
                    f"start with an empty state; checkpoints in the model folder are kept")
            with self._transaction():
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._conn.execute(statement)
                self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self._conn.execute("PRAGMA quick_check").fetchone()
        except sqlite3.DatabaseError as exc:
            raise DamagedDatabase(
                f"the state database {self.path} cannot be read ({exc}). Stop the backend, move "
                f"the file away (mv {self.path} {self.path}.damaged, and its -wal and -shm files "
                f"if present) and start again: projects are confirmed anew when Label Studio "
                f"calls /setup, and the next training run rebuilds the model from the "
                f"annotations") from None

    # -- plumbing -------------------------------------------------------------------------------
    @contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- projects -----------------------------------------------------------------------------
    def projects(self) -> list[int]:
        """Ids of every known project, ascending."""
        return [r[0] for r in self._rows("SELECT project_id FROM projects ORDER BY project_id")]

    def get(self, project: int) -> ProjectRecord | None:
        """The project's record; None when unknown.

        Raises
        ------
        DamagedRecord
            When its row cannot be decoded.
        """
        rows = self._rows("SELECT * FROM projects WHERE project_id=?", (project,))
        return _decode(rows[0]) if rows else None

    def update(self, project: int, **changes: Any) -> ProjectRecord:
        """Set fields of a project (creating it when unknown); returns the new record.

        Fields are those of :class:`ProjectRecord` except ``project_id`` and ``updated_at``.
        """
        pid = project
        encoded = _encode_changes(changes)
        with self._transaction():
            self._upsert(pid, encoded)
        return self.get(pid)  # type: ignore[return-value]

    def _upsert(self, pid: int, encoded: dict[str, Any]) -> None:
        """Write encoded fields of a project (inside a transaction)."""
        encoded = {**encoded, "updated_at": time.time()}
        names = ", ".join(encoded)
        marks = ", ".join("?" for _ in encoded)
        updates = ", ".join(f"{k}=excluded.{k}" for k in encoded)
        self._conn.execute(
            f"INSERT INTO projects (project_id, {names}) VALUES (?, {marks}) "
            f"ON CONFLICT(project_id) DO UPDATE SET {updates}", (pid, *encoded.values()))

    def mark_failed(self, project: int, error: str) -> None:
        """Record a failure without reading the row (works for a damaged one too)."""
        with self._transaction():
            self._conn.execute("UPDATE projects SET training_state='failed', last_error=?, "
                               "updated_at=? WHERE project_id=?",
                               (error, time.time(), project))

    # -- steps and queries ---------------------------------------------------------------------
    def record_step(self, project: int, step: int, queries: Iterable[QueryRecord],
                    details: Mapping[str, Any], **changes: Any) -> ProjectRecord:
        """Record a finished step in one transaction: its queries (replacing earlier queries of
        the same tasks), the history entry, ``al_step`` and ``changes``."""
        pid = project
        rows = _query_rows(pid, queries)
        encoded = _encode_changes(dict(al_step=step, **changes))
        history = json.dumps(dict(details))
        with self._transaction():
            self._conn.executemany(_INSERT_QUERY, rows)
            self._conn.execute("INSERT OR REPLACE INTO steps VALUES (?, ?, ?, ?)",
                               (pid, step, time.time(), history))
            self._upsert(pid, encoded)
        return self.get(pid)  # type: ignore[return-value]

    def add_queries(self, project: int, queries: Iterable[QueryRecord]) -> None:
        """Store queries made outside a step (regions computed on demand or topped up)."""
        rows = _query_rows(project, queries)
        with self._transaction():
            self._conn.executemany(_INSERT_QUERY, rows)

    def queries(self, project: int, answered: bool | None = None) -> dict[int, QueryRecord]:
        """Every stored query of the project by task id (only answered or unanswered ones when
        ``answered`` is given)."""
        sql = "SELECT * FROM queries WHERE project_id=?"
        args: list[Any] = [project]
        if answered is not None:
            sql += " AND answered=?"
            args.append(int(answered))
        out = {}
        for row in self._rows(sql, args):
            try:
                regions = tuple((int(label), tuple(int(i) for i in ids), float(conf))
                                for label, ids, conf in json.loads(row["regions"]))
            except (TypeError, ValueError) as exc:
                raise DamagedRecord(args[0], f"the query of task {row['task_id']}: {exc}") \
                    from None
            out[row["task_id"]] = QueryRecord(row["task_id"], row["step"], row["superpixels"],
                                              regions, bool(row["answered"]),
                                              row["prelabels_right"], row["prelabels_judged"])
        return out

    def mark_answered(self, project: int, tasks: Iterable[int]) -> None:
        """Note that these tasks' queries have an annotation now."""
        rows = [(project, t) for t in tasks]
        with self._transaction():
            self._conn.executemany(
                "UPDATE queries SET answered=1 WHERE project_id=? AND task_id=?", rows)

    def set_prelabels(self, project: int, task: int, right: int, judged: int) -> None:
        """Record how many pre-labels of a task's query the annotation kept."""
        with self._transaction():
            self._conn.execute(
                "UPDATE queries SET answered=1, prelabels_right=?, prelabels_judged=? "
                "WHERE project_id=? AND task_id=?", (right, judged, project, task))

    def steps(self, project: int) -> list[StepRecord]:
        """The project's finished steps, in order."""
        return [StepRecord(r["step"], r["finished_at"], json.loads(r["details"])) for r in
                self._rows("SELECT * FROM steps WHERE project_id=? ORDER BY step",
                           (project,))]

    def prelabel_accuracy(self, project: int) -> dict[int, dict[str, Any]]:
        """Per step: pre-labels right / judged over the answered queries of that step."""
        rows = self._rows(
            "SELECT step, SUM(prelabels_right), SUM(prelabels_judged), COUNT(*) FROM queries "
            "WHERE project_id=? AND answered=1 AND prelabels_judged IS NOT NULL GROUP BY step",
            (project,))
        return {r[0]: {"right": r[1], "judged": r[2], "tasks": r[3],
                       "accuracy": r[1] / r[2] if r[2] else None} for r in rows}
