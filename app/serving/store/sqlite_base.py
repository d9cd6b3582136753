"""The embedded control store's connection: one SQLite file in WAL mode, shared by the
processes of a host.

Needs nothing installed. ``--workers N`` and several containers sharing a volume open the same
file; SQLite's own locking orders the writers (``BEGIN IMMEDIATE``), so no home-made consensus.
Changes are noticed through ``PRAGMA data_version``, which moves when another connection
commits: a cheap local read, polled every 50 ms by one thread.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from app.serving.store.base import ControlStore, StoreUnavailable

logger = logging.getLogger(__name__)
POLL_S = 0.05
_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    model TEXT NOT NULL, version INTEGER NOT NULL, op TEXT NOT NULL, args TEXT NOT NULL,
    origin TEXT NOT NULL, created_at REAL NOT NULL, PRIMARY KEY (model, version));
CREATE TABLE IF NOT EXISTS counters (model TEXT PRIMARY KEY, version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS failed_records (model TEXT NOT NULL, version INTEGER NOT NULL,
    body TEXT NOT NULL, PRIMARY KEY (model, version));
CREATE TABLE IF NOT EXISTS processes (id TEXT PRIMARY KEY, info TEXT NOT NULL,
    heartbeat_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS applied (model TEXT NOT NULL, process_id TEXT NOT NULL,
    report TEXT NOT NULL, PRIMARY KEY (model, process_id));
CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, kind TEXT NOT NULL, model TEXT NOT NULL,
    active INTEGER NOT NULL, lease_until REAL, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS jobs_active ON jobs (active, kind, model);
CREATE TABLE IF NOT EXISTS accuracy (model TEXT PRIMARY KEY, result TEXT NOT NULL);
"""


class SqliteBase(ControlStore):
    """The connection, its transactions and the change watcher; the tables' use is in
    ``sqlite_store`` (records, processes) and ``sqlite_jobs`` (jobs, accuracy)."""

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

    # -- notifications -----------------------------------------------------------------

    def _notify(self) -> None:
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:  # a listener's bug must not end the watcher
                logger.exception("control store listener failed")

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
