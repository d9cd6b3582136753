"""The embedded control store: one SQLite file in WAL mode, shared by the processes of a host.

Needs nothing installed. ``--workers N`` and several containers sharing a volume open the same
file; SQLite's own locking orders the writers (``BEGIN IMMEDIATE``), so no home-made consensus.
Changes are noticed through ``PRAGMA data_version``, which moves when another connection
commits: a cheap local read, polled every 50 ms by one thread.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from app.serving.store.base import (
    INITIAL_VERSION,
    AppliedReport,
    ControlStore,
    JobConflict,
    JobRecord,
    Operation,
    ParameterRecord,
    ProcessInfo,
    StoreUnavailable,
    expired_reason,
)

POLL_S = 0.05
_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    model TEXT NOT NULL, version INTEGER NOT NULL, op TEXT NOT NULL, args TEXT NOT NULL,
    origin TEXT NOT NULL, created_at REAL NOT NULL, PRIMARY KEY (model, version));
CREATE TABLE IF NOT EXISTS counters (model TEXT PRIMARY KEY, version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS processes (id TEXT PRIMARY KEY, info TEXT NOT NULL,
    heartbeat_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS applied (model TEXT NOT NULL, process_id TEXT NOT NULL,
    report TEXT NOT NULL, PRIMARY KEY (model, process_id));
CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, kind TEXT NOT NULL, model TEXT NOT NULL,
    active INTEGER NOT NULL, lease_until REAL, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS jobs_active ON jobs (active, kind, model);
CREATE TABLE IF NOT EXISTS accuracy (model TEXT PRIMARY KEY, result TEXT NOT NULL);
"""
_JOB_HISTORY = 1000


def _record(row: sqlite3.Row) -> ParameterRecord:
    return ParameterRecord(
        model=row["model"],
        version=row["version"],
        op=row["op"],
        args=json.loads(row["args"]),
        origin=row["origin"],
        created_at=row["created_at"],
    )


def _job(body: str) -> JobRecord:
    return JobRecord(**json.loads(body))


class SqliteStore(ControlStore):
    """``sqlite:///path/to/file`` (shared), or ``sqlite://`` in memory (one process only)."""

    def __init__(self, url: str, process_timeout_s: float, job_lease_s: float) -> None:
        super().__init__(url, process_timeout_s, job_lease_s)
        path = url.removeprefix("sqlite://").removeprefix("/")
        self.path = Path(path)
        self._memory = not path or path == ":memory:"
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._listeners: list[Callable[[], None]] = []
        try:
            if not self._memory:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = self._connect()
            with self._lock:
                self._db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise self._unavailable(exc) from exc

    def _connect(self) -> sqlite3.Connection:
        target = ":memory:" if self._memory else str(self.path)
        db = sqlite3.connect(target, timeout=10, check_same_thread=False, isolation_level=None)
        db.row_factory = sqlite3.Row
        if not self._memory:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
        return db

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        return StoreUnavailable(
            f"the control store {self.name} cannot be used ({exc}); parameter changes and "
            "jobs are refused until it works again, inference goes on."
        )

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One writer at a time across processes (BEGIN IMMEDIATE takes the write lock)."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise self._unavailable(exc) from exc
        if self._memory:  # no other connection can see it: tell our own listeners
            self._notify()

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise self._unavailable(exc) from exc

    # -- parameter records -------------------------------------------------------------

    def append_record(
        self, model: str, op: Operation, args: dict[str, Any], origin: str, floor: int
    ) -> ParameterRecord:
        with self._transaction() as db:
            row = db.execute("SELECT version FROM counters WHERE model = ?", (model,)).fetchone()
            current = row["version"] if row else INITIAL_VERSION
            version = max(current, floor, INITIAL_VERSION) + 1
            db.execute(
                "INSERT INTO counters (model, version) VALUES (?, ?) "
                "ON CONFLICT (model) DO UPDATE SET version = excluded.version",
                (model, version),
            )
            record = ParameterRecord(model, version, op, args, origin, time.time())
            db.execute(
                "INSERT INTO records VALUES (?, ?, ?, ?, ?, ?)",
                (model, version, op, json.dumps(args), origin, record.created_at),
            )
        return record

    def records_after(self, model: str, version: int) -> list[ParameterRecord]:
        rows = self._query(
            "SELECT * FROM records WHERE model = ? AND version > ? ORDER BY version",
            (model, version),
        )
        return [_record(row) for row in rows]

    def catch_up_records(self, model: str) -> list[ParameterRecord]:
        rows = self._query(
            "SELECT * FROM records WHERE model = ? AND version >= COALESCE((SELECT MAX(version)"
            " FROM records WHERE model = ? AND op = 'reload'), 0) ORDER BY version",
            (model, model),
        )
        return [_record(row) for row in rows]

    # -- processes ---------------------------------------------------------------------

    def heartbeat(self, info: ProcessInfo) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO processes VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                "info = excluded.info, heartbeat_at = excluded.heartbeat_at",
                (info.process_id, json.dumps(asdict(info)), info.heartbeat_at),
            )

    def live_processes(self) -> list[ProcessInfo]:
        since = time.time() - self.process_timeout_s
        rows = self._query(
            "SELECT info FROM processes WHERE heartbeat_at >= ? ORDER BY id", (since,)
        )
        infos = [json.loads(row["info"]) for row in rows]
        return [ProcessInfo(**{**info, "models": tuple(info["models"])}) for info in infos]

    def remove_process(self, process_id: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM processes WHERE id = ?", (process_id,))
            db.execute("DELETE FROM applied WHERE process_id = ?", (process_id,))

    def report_applied(self, report: AppliedReport) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO applied VALUES (?, ?, ?) ON CONFLICT (model, process_id) "
                "DO UPDATE SET report = excluded.report",
                (report.model, report.process_id, json.dumps(asdict(report))),
            )

    def applied(self, model: str) -> dict[str, AppliedReport]:
        rows = self._query("SELECT report FROM applied WHERE model = ?", (model,))
        reports = [AppliedReport(**json.loads(row["report"])) for row in rows]
        return {report.process_id: report for report in reports}

    # -- jobs and accuracy -------------------------------------------------------------

    def create_job(self, job: JobRecord) -> None:
        with self._transaction() as db:
            other = db.execute(
                "SELECT id FROM jobs WHERE active = 1 AND kind = ? AND model = ?",
                (job.kind, job.model),
            ).fetchone()
            if other is not None:
                raise JobConflict(
                    f"a {job.kind} job for {job.model!r} is already running (job {other['id']}); "
                    f"poll GET /admin/jobs/{other['id']}."
                )
            db.execute(
                "INSERT INTO jobs VALUES (?, ?, ?, 1, ?, ?)",
                (job.id, job.kind, job.model, time.time() + self.job_lease_s, _dump(job)),
            )
            db.execute(
                "DELETE FROM jobs WHERE active = 0 AND id NOT IN "
                "(SELECT id FROM jobs WHERE active = 0 ORDER BY rowid DESC LIMIT ?)",
                (_JOB_HISTORY,),
            )

    def update_job(self, job: JobRecord) -> None:
        lease = time.time() + self.job_lease_s if job.active else None
        with self._transaction() as db:
            db.execute(
                "UPDATE jobs SET active = ?, lease_until = ?, body = ? "
                "WHERE id = ? AND (active = 1 OR ? = 0)",
                (int(job.active), lease, _dump(job), job.id, int(job.active)),
            )

    def get_job(self, job_id: str) -> JobRecord | None:
        rows = self._query("SELECT body FROM jobs WHERE id = ?", (job_id,))
        return _job(rows[0]["body"]) if rows else None

    def expire_jobs(self) -> list[JobRecord]:
        now = time.time()
        if not self._query("SELECT 1 FROM jobs WHERE active = 1 AND lease_until < ?", (now,)):
            return []  # the common case stays a read: no write lock taken every heartbeat
        expired = []
        with self._transaction() as db:
            rows = db.execute(
                "SELECT body FROM jobs WHERE active = 1 AND lease_until < ?", (time.time(),)
            ).fetchall()
            for row in rows:
                job = _job(row["body"])
                job.status, job.error, job.finished_at = "failed", expired_reason(job), time.time()
                db.execute(
                    "UPDATE jobs SET active = 0, lease_until = NULL, body = ? WHERE id = ?",
                    (_dump(job), job.id),
                )
                expired.append(job)
        return expired

    def set_accuracy(self, model: str, result: dict[str, Any]) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO accuracy VALUES (?, ?) ON CONFLICT (model) "
                "DO UPDATE SET result = excluded.result",
                (model, json.dumps(result)),
            )

    def get_accuracy(self, model: str) -> dict[str, Any] | None:
        rows = self._query("SELECT result FROM accuracy WHERE model = ?", (model,))
        return json.loads(rows[0]["result"]) if rows else None

    # -- notifications -----------------------------------------------------------------

    def _notify(self) -> None:
        for listener in self._listeners:
            listener()

    def watch(self, on_change: Callable[[], None]) -> None:
        self._listeners.append(on_change)
        if self._memory or self._watcher is not None:
            return
        self._watcher = threading.Thread(target=self._poll, name="store-watch", daemon=True)
        self._watcher.start()

    def _poll(self) -> None:
        """``data_version`` changes when another connection commits (our own commits do not
        move it on our connection, so the watcher has a connection of its own)."""
        seen: int | None = None
        db: sqlite3.Connection | None = None
        while not self._stop.wait(POLL_S):
            try:
                db = db or self._connect()
                version = db.execute("PRAGMA data_version").fetchone()[0]
            except sqlite3.Error:
                db = None
                continue
            if version != seen:
                seen = version
                self._notify()
        if db is not None:
            db.close()

    def close(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=2)
        self._listeners.clear()  # they hold the app (sync -> registry -> models)
        with self._lock:
            self._db.close()


def _dump(job: JobRecord) -> str:
    return json.dumps(asdict(job))
