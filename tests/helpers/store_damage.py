"""Damaged entries written straight into a control store (SQLite file or Redis), as a bug, a
hand edit or another version could leave them: what the service must read past."""

from __future__ import annotations

import sqlite3
import time

import redis

from app.serving.store.base import ControlStore
from app.serving.store.redis_store import RedisStore
from app.serving.store.sqlite_store import SqliteStore

GARBAGE = '{"op": "reinitialize", "args": {"seed": 1'  # cut short: not JSON


class Damage:
    """Writes what the store's own code never would, through a connection of its own."""

    def __init__(self, store: ControlStore) -> None:
        self.store = store
        if isinstance(store, SqliteStore):
            self._db: sqlite3.Connection | None = sqlite3.connect(store.path, isolation_level=None)
            self._redis: redis.Redis | None = None
        elif isinstance(store, RedisStore):
            self._db = None
            self._redis = redis.Redis.from_url(store.url, decode_responses=True)
        else:
            raise TypeError(f"no damage for {type(store).__name__}")

    def _key(self, *parts: str) -> str:
        assert isinstance(self.store, RedisStore)
        return ":".join((self.store.prefix, *parts))

    def record(self, model: str, op: str = "reinitialize", args: str = "{not json") -> int:
        """A record at the model's next version: SQLite args / a Redis body that do not
        parse, or (``args`` valid JSON) a record with an unknown op or bad arguments."""
        if self._db is not None:
            row = self._db.execute("SELECT version FROM counters WHERE model = ?", (model,))
            version = max((row.fetchone() or (1,))[0], 1) + 1
            self._db.execute(
                "INSERT INTO counters VALUES (?, ?) ON CONFLICT (model) DO UPDATE SET "
                "version = excluded.version",
                (model, version),
            )
            self._db.execute(
                "INSERT INTO records VALUES (?, ?, ?, ?, 'hand-edit', ?)",
                (model, version, op, args, time.time()),
            )
            return version
        assert self._redis is not None
        version = max(int(self._redis.incr(self._key("version", model))), 2)
        self._redis.set(self._key("version", model), version)
        body = GARBAGE if args == "{not json" else f'{{"op": "{op}", "args": {args}}}'
        self._redis.hset(self._key("records", model), str(version), body)
        self._redis.publish(self._key("events"), f"record:{model}:{version}")
        return version

    def process(self, process_id: str) -> None:
        """A live process entry that does not decode."""
        if self._db is not None:
            self._db.execute(
                "INSERT OR REPLACE INTO processes VALUES (?, 'not json', ?)",
                (process_id, time.time() + 3600),
            )
            return
        assert self._redis is not None
        self._redis.set(self._key("process", process_id), "not json", ex=3600)
        self._redis.sadd(self._key("processes"), process_id)

    def report(self, model: str, process_id: str) -> None:
        """An applied report that does not decode."""
        if self._db is not None:
            self._db.execute(
                "INSERT OR REPLACE INTO applied VALUES (?, ?, '[1, 2')", (model, process_id)
            )
            return
        assert self._redis is not None
        self._redis.hset(self._key("applied", model), process_id, "[1, 2")

    def job(self, job_id: str, kind: str, model: str, leased: bool = False) -> None:
        """An active job holding the kind/model slot whose entry does not decode; its lease
        has run out unless ``leased``."""
        if self._db is not None:
            lease = time.time() + (3600 if leased else -1)
            self._db.execute(
                "INSERT INTO jobs VALUES (?, ?, ?, 1, ?, 'not json')", (job_id, kind, model, lease)
            )
            return
        assert self._redis is not None
        self._redis.set(self._key("job", job_id), "not json")
        self._redis.set(self._key("active", kind, model), job_id)
        self._redis.sadd(self._key("jobs", "active"), job_id)
        if leased:
            self._redis.set(self._key("lease", job_id), job_id, ex=3600)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
        if self._redis is not None:
            self._redis.close()
