"""The control store shared by every serving process, chosen by ``TORCHGATE_STATE_URL``."""

from __future__ import annotations

from typing import Any

from app.errors import ConfigurationError
from app.serving.store.base import (
    AppliedReport,
    ControlStore,
    FailedRecord,
    JobConflict,
    JobRecord,
    ParameterRecord,
    ProcessInfo,
    SkippedEntry,
    StoreUnavailable,
    redact,
)

__all__ = [
    "AppliedReport",
    "ControlStore",
    "FailedRecord",
    "JobConflict",
    "JobRecord",
    "ParameterRecord",
    "ProcessInfo",
    "SkippedEntry",
    "StoreUnavailable",
    "open_store",
]


def open_store(
    url: str, process_timeout_s: float, job_lease_s: float, **connection: Any
) -> ControlStore:
    """``sqlite:///file`` or ``sqlite://`` (memory) for one host, ``redis://...`` for a cluster;
    ``connection``: a Redis store's password and TLS files (connection.redis_options)."""
    if url.startswith("sqlite://"):
        from app.serving.store.sqlite_store import SqliteStore

        return SqliteStore(url, process_timeout_s, job_lease_s)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from app.serving.store.redis_store import RedisStore

        return RedisStore(url, process_timeout_s, job_lease_s, **connection)
    raise ConfigurationError(
        f"TORCHGATE_STATE_URL {redact(url)!r} is not supported: use "
        "sqlite:///path/to/state.sqlite3, sqlite:// (in memory, one process) or "
        "redis://host:6379/0 (rediss:// for TLS)."
    )
