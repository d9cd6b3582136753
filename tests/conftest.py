"""Fixtures shared by every test folder (helpers live in tests/helpers, imported by name)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from app.config import Settings
from tests.helpers.apps import app_settings, running_app
from tests.helpers.redis_server import RedisServer
from tests.helpers.servers import RealServer, real_server_process
from tests.helpers.weights import write_random_weights


def pytest_configure(config: pytest.Config) -> None:
    # In-process apps never open the gRPC port (8001 by default), so tests can run side by
    # side; a real server gets a free one from serve_process, and a test that wants it passes
    # its own. Servers compile AOTInductor graphs in the background (minutes of CPU for the
    # ImageNet nets); the tests of that turn it on themselves, every other app and server
    # serves eager.
    os.environ.setdefault("TORCHGATE_GRPC_PORT", "0")
    os.environ.setdefault("TORCHGATE_COMPILE_GRAPHS", "false")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Markers that must go together: a test that uses a real server fixture, drives chromium
    or soaks is an integration test, so that ``-m "not integration"`` starts nothing."""
    real = {
        "real_server",
        "limited_server",
        "abuse_server",
        "redis_server",
        "toy_server",
        "echo_server",
        "metrics_server",
    }
    unmarked = [
        item.nodeid
        for item in items
        if item.get_closest_marker("integration") is None
        and (
            real & set(getattr(item, "fixturenames", ()))
            or item.get_closest_marker("browser")
            or item.get_closest_marker("soak")
        )
    ]
    if unmarked:
        raise pytest.UsageError(f"mark these pytest.mark.integration: {unmarked[:10]}")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weights dir holding alexnet test weights (the big networks are added on demand)."""
    directory = tmp_path_factory.mktemp("weights")
    write_random_weights("alexnet", directory)
    return directory


@pytest.fixture
def settings_factory(weights_dir: Path) -> Callable[..., Settings]:
    """Settings of an in-process app (alexnet from ``weights_dir``), with overrides."""

    def build(**overrides: object) -> Settings:
        return app_settings(weights_dir, **overrides)

    return build


@pytest.fixture
async def alexnet_client(
    settings_factory: Callable[..., Settings],
) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(settings_factory()) as client:
        yield client


@pytest.fixture(scope="session")
def real_server(
    weights_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RealServer]:
    """One real server (the default gRPC server), booted once for the modules that share it."""
    with real_server_process(weights_dir, tmp_path_factory.mktemp("real-server")) as server:
        yield server


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A self-signed CA, and a server and a client certificate it signed, as PEM files."""
    from tests.helpers.pki import make_pki  # cryptography, for the TLS tests only

    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
