"""Per-project state of the backend in one SQLite file.

What survives a restart: the model version and checkpoint, the active-learning step, the budget,
the training state and last error, the seed batch, the labeling queue (task ids with scores), the
superpixels queried in each task at each step, the stored label config, and the count of
annotation events since the last training run.

One connection guarded by a lock serves every thread of the process; the database runs in WAL
mode with a busy timeout, so a second process (a CLI, a test) can read it while the server runs.
Every write is one transaction.

Examples
--------
>>> store = StateStore(":memory:")
>>> store.update_project(7, al_step=1, seed_batch=[3, 5])["al_step"]
1
>>> store.set_queue(7, [(11, 0.9), (12, 0.4)])
>>> store.queue(7)
[(11, 0.9), (12, 0.4)]
"""

from __future__ import annotations

import json
import math
import operator
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from os import PathLike
from typing import Any

#: Values of the ``training_state`` field.
TRAINING_STATES = ("idle", "queued", "running", "failed")

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS projects (
    project_id INTEGER PRIMARY KEY,
    model_version TEXT,
    checkpoint TEXT,
    al_step INTEGER NOT NULL DEFAULT 0,
    budget TEXT,
    training_state TEXT NOT NULL DEFAULT 'idle',
    last_error TEXT,
    last_trained REAL,
    seed_batch TEXT NOT NULL DEFAULT '[]',
    annotations_since_run INTEGER NOT NULL DEFAULT 0,
    label_config TEXT,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS queue (
    project_id INTEGER NOT NULL,
    position INTEGER NOT NULL,
    task_id INTEGER NOT NULL,
    score REAL NOT NULL,
    PRIMARY KEY (project_id, task_id)
);
CREATE INDEX IF NOT EXISTS queue_order ON queue (project_id, position);
CREATE TABLE IF NOT EXISTS queried (
    project_id INTEGER NOT NULL,
    step INTEGER NOT NULL,
    task_id INTEGER NOT NULL,
    superpixels TEXT NOT NULL,
    PRIMARY KEY (project_id, step, task_id)
);
"""


def _nonneg_int(name: str, value: Any) -> int:
    value = _as_int(name, value)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def _opt_str(name: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} must be a str or None, got {type(value).__name__}")
    return value


def _opt_time(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"{name} must be a Unix time in seconds or None, got {value!r}")
    return float(value)


def _training_state(name: str, value: Any) -> str:
    if value not in TRAINING_STATES:
        raise ValueError(f"{name} must be one of {', '.join(TRAINING_STATES)}, got {value!r}")
    return value


def _budget(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a mapping (unit, limit, images, superpixels, pixels) or None")
    try:
        return json.dumps(dict(value), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must hold JSON values: {exc}") from None


def _task_ids(name: str, value: Any) -> str:
    return json.dumps(_int_list(name, value))


def _int_list(name: str, value: Any) -> list[int]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(f"{name} must be a sequence of ints, got {type(value).__name__}")
    return [_as_int(name, item) for item in value]


def _as_int(name: str, value: Any) -> int:
    """``value`` as an int; accepts Python and NumPy integers, rejects bools and floats."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {value!r}") from None


#: Writable project fields and how each is checked and encoded for SQLite.
_FIELDS: dict[str, Callable[[str, Any], Any]] = {
    "model_version": _opt_str,
    "checkpoint": _opt_str,
    "al_step": _nonneg_int,
    "budget": _budget,
    "training_state": _training_state,
    "last_error": _opt_str,
    "last_trained": _opt_time,
    "seed_batch": _task_ids,
    "annotations_since_run": _nonneg_int,
    "label_config": _opt_str,
}

#: The project fields :meth:`StateStore.update_project` accepts.
PROJECT_FIELDS = tuple(_FIELDS)


def _project_id(project: Any) -> int:
    return _as_int("project", project)


class StateStore:
    """SQLite-backed state of every project.

    Parameters
    ----------
    path : str or path-like
        Database file, created with its schema when missing; ``":memory:"`` for a private
        in-memory store.
    timeout : float
        Seconds to wait for another process's lock before failing.
    """

    def __init__(self, path: str | PathLike[str], timeout: float = 10.0) -> None:
        self.path = str(path)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(
            self.path, timeout=timeout, isolation_level=None, check_same_thread=False
        )
        self._conn.row_factory = sqlite3.Row
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")  # durable across crashes in WAL mode
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                self._conn.close()
                raise ValueError(
                    f"{self.path} has state schema {version}; this version reads up to {SCHEMA_VERSION}"
                )
            with self._transaction():
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._conn.execute(statement)
                self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    # -- plumbing -------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` under the lock; ``ROLLBACK`` on any error."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def close(self) -> None:
        """Close the connection; the store is unusable afterwards."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- projects -------------------------------------------------------------------------

    def projects(self) -> list[int]:
        """Ids of every known project, ascending."""
        with self._lock:
            rows = self._conn.execute("SELECT project_id FROM projects ORDER BY project_id").fetchall()
        return [r[0] for r in rows]

    def get_project(self, project: int) -> dict[str, Any] | None:
        """The project's fields as a dict, or None for an unknown project.

        Keys: ``project_id``, every name in :data:`PROJECT_FIELDS` (``budget`` decoded to a dict
        or None, ``seed_batch`` to a list of ints) and ``updated_at``.
        """
        pid = _project_id(project)
        with self._lock:
            row = self._conn.execute("SELECT * FROM projects WHERE project_id=?", (pid,)).fetchone()
        if row is None:
            return None
        out = dict(row)
        out["budget"] = None if out["budget"] is None else json.loads(out["budget"])
        out["seed_batch"] = json.loads(out["seed_batch"])
        return out

    def ensure_project(self, project: int, **fields: Any) -> dict[str, Any]:
        """Create the project with ``fields`` if it is unknown; leave a known one unchanged.

        Returns
        -------
        dict
            The project, as :meth:`get_project` returns it.
        """
        pid = _project_id(project)
        encoded = _encode(fields)
        with self._transaction():
            exists = self._conn.execute("SELECT 1 FROM projects WHERE project_id=?", (pid,)).fetchone()
            if exists is None:
                self._upsert(pid, encoded)
        return self.get_project(pid)  # type: ignore[return-value]

    def update_project(self, project: int, **fields: Any) -> dict[str, Any]:
        """Set fields of a project, creating it when unknown.

        Parameters
        ----------
        project : int
            Label Studio project id.
        **fields
            Any of :data:`PROJECT_FIELDS`.

        Returns
        -------
        dict
            The project after the update, as :meth:`get_project` returns it.

        Raises
        ------
        ValueError
            For an unknown field name or training state.
        TypeError
            For a value of the wrong type.
        """
        pid = _project_id(project)
        encoded = _encode(fields)
        with self._transaction():
            self._upsert(pid, encoded)
        return self.get_project(pid)  # type: ignore[return-value]

    def _upsert(self, pid: int, encoded: dict[str, Any]) -> None:
        encoded = {**encoded, "updated_at": time.time()}
        names = ", ".join(encoded)
        marks = ", ".join("?" for _ in encoded)
        updates = ", ".join(f"{k}=excluded.{k}" for k in encoded)
        self._conn.execute(
            f"INSERT INTO projects (project_id, {names}) VALUES (?, {marks}) "
            f"ON CONFLICT(project_id) DO UPDATE SET {updates}",
            (pid, *encoded.values()),
        )

    # -- queue ----------------------------------------------------------------------------

    def set_queue(self, project: int, items: Iterable[tuple[int, float]]) -> None:
        """Replace the project's labeling queue with ``(task_id, score)`` pairs, in order."""
        pid = _project_id(project)
        rows = _queue_rows(pid, items)
        with self._transaction():
            self._upsert(pid, {})
            self._write_queue(pid, rows)

    def queue(self, project: int) -> list[tuple[int, float]]:
        """The project's labeling queue as ``(task_id, score)`` pairs, first to label first."""
        pid = _project_id(project)
        with self._lock:
            rows = self._conn.execute(
                "SELECT task_id, score FROM queue WHERE project_id=? ORDER BY position", (pid,)
            ).fetchall()
        return [(r[0], r[1]) for r in rows]

    def _write_queue(self, pid: int, rows: list[tuple[int, int, int, float]]) -> None:
        self._conn.execute("DELETE FROM queue WHERE project_id=?", (pid,))
        self._conn.executemany(
            "INSERT INTO queue (project_id, position, task_id, score) VALUES (?, ?, ?, ?)", rows
        )

    # -- active-learning steps ------------------------------------------------------------

    def record_step(
        self,
        project: int,
        step: int,
        queried: Mapping[int, Sequence[int]],
        queue: Iterable[tuple[int, float]] | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Record one active-learning step in a single transaction.

        Stores the superpixels queried in each task at ``step`` (replacing what that step held),
        sets ``al_step`` to ``step``, replaces the queue when ``queue`` is given, and sets any
        other project ``fields`` (``budget``, ``model_version``...).

        Parameters
        ----------
        project : int
            Label Studio project id.
        step : int
            Step number (the seed batch is step 0 by convention).
        queried : mapping of int to sequence of int
            ``{task_id: [superpixel ids]}`` queried at this step.
        queue : iterable of (int, float), optional
            The new labeling queue.
        **fields
            More project fields, as in :meth:`update_project`.

        Returns
        -------
        dict
            The project after the step.
        """
        pid = _project_id(project)
        step = _nonneg_int("step", step)
        if not isinstance(queried, Mapping):
            raise TypeError("queried must be a mapping {task_id: [superpixel ids]}")
        if "al_step" in fields:
            raise ValueError("pass the step number as `step`, not as al_step")
        qrows = []
        for task_id, ids in queried.items():
            tid = _as_int("queried task id", task_id)
            qrows.append((pid, step, tid, json.dumps(sorted(set(_int_list("superpixel ids", ids))))))
        queue_rows = None if queue is None else _queue_rows(pid, queue)
        encoded = _encode({**fields, "al_step": step})
        with self._transaction():
            self._upsert(pid, encoded)
            self._conn.execute("DELETE FROM queried WHERE project_id=? AND step=?", (pid, step))
            self._conn.executemany(
                "INSERT INTO queried (project_id, step, task_id, superpixels) VALUES (?, ?, ?, ?)", qrows
            )
            if queue_rows is not None:
                self._write_queue(pid, queue_rows)
        return self.get_project(pid)  # type: ignore[return-value]

    def queried(self, project: int, step: int | None = None) -> dict[int, list[int]]:
        """Superpixels queried per task: ``{task_id: sorted superpixel ids}``.

        With ``step`` given, only that step; otherwise the union over every step.
        """
        pid = _project_id(project)
        sql = "SELECT task_id, superpixels FROM queried WHERE project_id=?"
        args: tuple[int, ...] = (pid,)
        if step is not None:
            sql += " AND step=?"
            args = (pid, _nonneg_int("step", step))
        with self._lock:
            rows = self._conn.execute(sql + " ORDER BY step, task_id", args).fetchall()
        merged: dict[int, set[int]] = {}
        for task_id, ids in rows:
            merged.setdefault(task_id, set()).update(json.loads(ids))
        return {tid: sorted(ids) for tid, ids in merged.items()}


def _encode(fields: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(fields) - set(_FIELDS))
    if unknown:
        raise ValueError(f"unknown project field(s) {', '.join(unknown)}; expected {', '.join(_FIELDS)}")
    return {name: _FIELDS[name](name, value) for name, value in fields.items()}


def _queue_rows(pid: int, items: Iterable[tuple[int, float]]) -> list[tuple[int, int, int, float]]:
    rows = []
    seen = set()
    for position, item in enumerate(items):
        try:
            task_id, score = item
        except (TypeError, ValueError):
            raise TypeError(f"queue items must be (task_id, score) pairs, got {item!r}") from None
        tid = _as_int("queue task id", task_id)
        try:
            value = float(score)
        except (TypeError, ValueError):
            raise TypeError(f"queue score must be a number, got {score!r}") from None
        if not math.isfinite(value):
            raise ValueError(f"queue score must be finite, got {score!r}")
        if tid in seen:
            raise ValueError(f"task {tid} appears twice in the queue")
        seen.add(tid)
        rows.append((pid, position, tid, value))
    return rows
