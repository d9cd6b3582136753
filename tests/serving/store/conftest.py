"""Stores for the contract tests: SQLite (a shared file) and a real redis-server started on a
free loopback port, both behind one ``make_store`` fixture."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.serving.store.redis_store import RedisStore
from app.serving.store.sqlite_store import SqliteStore
from tests.helpers.redis_server import RedisServer
from tests.helpers.stores import StoreFactory


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    running = RedisServer(tmp_path_factory.mktemp("redis"), persist=False)
    running.start()
    yield running
    running.stop()


@pytest.fixture
def make_redis_store(server: RedisServer) -> Iterator[StoreFactory]:
    """Stores of one test share a key prefix of their own, like the processes of a service."""
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    stores: list[RedisStore] = []

    def make(
        url: str = server.url, process_timeout_s: float = 5, job_lease_s: float = 10
    ) -> RedisStore:
        store = RedisStore(url, process_timeout_s, job_lease_s, prefix=prefix)
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.integration)])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Stores of one test share one SQLite file, or one Redis key prefix."""
    if request.param == "redis":
        yield request.getfixturevalue("make_redis_store")
        return
    stores: list[SqliteStore] = []

    def make(
        url: str = f"sqlite:///{tmp_path}/state.sqlite3",
        process_timeout_s: float = 5,
        job_lease_s: float = 10,
    ) -> SqliteStore:
        store = SqliteStore(url, process_timeout_s, job_lease_s)
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()
