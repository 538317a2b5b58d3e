"""The service's state on disk: one SQLite database in WAL mode.

Everything the service accepted is here before it answers: the nodes (with their drained flag), the
jobs submitted and not cancelled, the plans it published (the last ``plan_history``) and the recent
decisions (plan actions, the last ``decisions_kept``). The running service holds nothing that is not in
this file or derivable from it, so a restart after ``kill -9`` comes back with every accepted job and
node and the same plan.

Every statement is parameterised (names are never put into SQL text); every change is one explicit
transaction on the one writer connection, guarded by a lock. ``synchronous=NORMAL`` (the default)
keeps every committed transaction across a crash of the process (``kill -9``); ``synchronous=FULL``
also across a power loss or an operating-system crash, at the cost of an fsync per commit.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    drained INTEGER NOT NULL DEFAULT 0,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    spec TEXT NOT NULL,
    submitted REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS plans (
    version INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    info TEXT NOT NULL,
    allocation TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS decisions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    kind TEXT NOT NULL,
    job TEXT NOT NULL,
    reason TEXT NOT NULL
);
"""

SYNC_MODES = ("normal", "full")


class StoreError(Exception):
    """The database cannot be opened or has a schema this version does not know."""


@dataclass(frozen=True)
class StoredNode:
    name: str
    spec: dict[str, Any]
    drained: bool
    updated: float


@dataclass(frozen=True)
class StoredJob:
    name: str
    spec: dict[str, Any]
    submitted: float


@dataclass(frozen=True)
class StoredPlan:
    version: int
    time: float
    info: dict[str, Any]
    allocation: dict[str, Any]


@dataclass(frozen=True)
class Decision:
    time: float
    kind: str
    job: str
    reason: str


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


class Store:
    """The SQLite file at ``path`` (created when missing). ``sync``: ``normal`` or ``full`` (see the
    module's docstring). ``plan_history``: plans kept for ``GET /v1/plan?since=``; ``decisions_kept``:
    plan actions kept for the dashboard."""

    def __init__(
        self, path: str | Path, *, sync: str = "normal", plan_history: int = 32, decisions_kept: int = 500
    ) -> None:
        if sync not in SYNC_MODES:
            raise ValueError(f"sync: {sync!r} is not one of {', '.join(SYNC_MODES)}")
        self.path = Path(path)
        self.plan_history = max(2, int(plan_history))
        self.decisions_kept = max(1, int(decisions_kept))
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30.0)
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"{self.path}: could not switch to WAL mode (got {mode!r})")
            self._db.execute(f"PRAGMA synchronous={sync.upper()}")  # one of two constants, never user text
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", ("schema",)).fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta (key, value) VALUES (?, ?)", ("schema", str(SCHEMA_VERSION)))
            elif row[0] != str(SCHEMA_VERSION):
                raise StoreError(f"{self.path}: schema version {row[0]} is not {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as err:
            raise StoreError(f"{self.path}: {err}") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # Nodes ------------------------------------------------------------------------------------
    def put_node(self, name: str, spec: dict[str, Any], *, drained: bool, now: float) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO nodes (name, spec, drained, updated) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET spec = excluded.spec, drained = excluded.drained, "
                "updated = excluded.updated",
                (name, _dumps(spec), int(drained), now),
            )

    def delete_node(self, name: str) -> bool:
        with self._transaction() as db:
            return db.execute("DELETE FROM nodes WHERE name = ?", (name,)).rowcount > 0

    def nodes(self) -> list[StoredNode]:
        with self._lock:
            rows = self._db.execute("SELECT name, spec, drained, updated FROM nodes ORDER BY rowid").fetchall()
        return [StoredNode(r[0], json.loads(r[1]), bool(r[2]), float(r[3])) for r in rows]

    # Jobs -------------------------------------------------------------------------------------
    def add_job(self, name: str, spec: dict[str, Any], *, now: float) -> None:
        """Insert a new job; ``sqlite3.IntegrityError`` when the name is taken."""
        with self._transaction() as db:
            db.execute("INSERT INTO jobs (name, spec, submitted) VALUES (?, ?, ?)", (name, _dumps(spec), now))

    def add_jobs(self, items: list[tuple[str, dict[str, Any]]], *, now: float) -> None:
        """Insert several new jobs in one transaction (all or none)."""
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO jobs (name, spec, submitted) VALUES (?, ?, ?)",
                [(name, _dumps(spec), now) for name, spec in items],
            )

    def delete_job(self, name: str) -> bool:
        with self._transaction() as db:
            return db.execute("DELETE FROM jobs WHERE name = ?", (name,)).rowcount > 0

    def jobs(self) -> list[StoredJob]:
        with self._lock:
            rows = self._db.execute("SELECT name, spec, submitted FROM jobs ORDER BY seq").fetchall()
        return [StoredJob(r[0], json.loads(r[1]), float(r[2])) for r in rows]

    def job_names(self) -> set[str]:
        with self._lock:
            return {r[0] for r in self._db.execute("SELECT name FROM jobs")}

    # Plans and decisions ------------------------------------------------------------------------
    def put_plan(self, plan: StoredPlan, decisions: list[Decision]) -> None:
        """Record a published plan and its decisions; keep the last ``plan_history`` plans and the last
        ``decisions_kept`` decisions."""
        self.put_plan_text(plan.version, plan.time, _dumps(plan.info), _dumps(plan.allocation), decisions)

    def put_plan_text(self, version: int, time: float, info: str, allocation: str, decisions: list[Decision]) -> None:
        """:meth:`put_plan` of a plan whose info and allocation are JSON text already (the loop's worker
        encodes them, so that the service's interpreter does not)."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO plans (version, time, info, allocation) VALUES (?, ?, ?, ?)",
                (version, time, info, allocation),
            )
            db.execute("DELETE FROM plans WHERE version <= ?", (version - self.plan_history,))
            if decisions:
                db.executemany(
                    "INSERT INTO decisions (time, kind, job, reason) VALUES (?, ?, ?, ?)",
                    [(d.time, d.kind, d.job, d.reason) for d in decisions],
                )
                db.execute(
                    "DELETE FROM decisions WHERE seq <= (SELECT MAX(seq) FROM decisions) - ?", (self.decisions_kept,)
                )

    def last_plan(self) -> StoredPlan | None:
        with self._lock:
            row = self._db.execute(
                "SELECT version, time, info, allocation FROM plans ORDER BY version DESC LIMIT 1"
            ).fetchone()
        return None if row is None else StoredPlan(int(row[0]), float(row[1]), json.loads(row[2]), json.loads(row[3]))

    def plan(self, version: int) -> StoredPlan | None:
        with self._lock:
            row = self._db.execute(
                "SELECT version, time, info, allocation FROM plans WHERE version = ?", (version,)
            ).fetchone()
        return None if row is None else StoredPlan(int(row[0]), float(row[1]), json.loads(row[2]), json.loads(row[3]))

    def decisions(self, limit: int = 50) -> list[Decision]:
        with self._lock:
            rows = self._db.execute(
                "SELECT time, kind, job, reason FROM decisions ORDER BY seq DESC LIMIT ?", (int(limit),)
            ).fetchall()
        return [Decision(float(r[0]), r[1], r[2], r[3]) for r in rows]
