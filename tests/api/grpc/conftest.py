"""Fixtures of the gRPC tests: a gRPC server in the test's event loop over a registry the test
controls, for what needs no model (health, reflection, TLS, the shared upload budget)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from app.api.grpc.server import GrpcServer, start_grpc_server, stop_grpc_server
from app.api.upload_budget import UploadBudget
from app.config import Settings
from app.errors import ModelNotReady, NotFound
from app.metrics import Metrics
from app.serving.registry import ModelStatus
from tests.conftest import free_port


@dataclass
class FakeRegistry:
    """What the gRPC server reads of the registry, each part set by the test."""

    entries: dict[str, Any] = field(default_factory=dict)
    in_sync: bool = True
    device_failure: str | None = None

    @classmethod
    def of(cls, *models: str) -> FakeRegistry:
        return cls({name: SimpleNamespace(status=ModelStatus.LOADING) for name in models})

    def set(self, name: str, status: ModelStatus) -> None:
        self.entries[name].status = status

    def runtime(self, name: str) -> Any:
        if name not in self.entries:
            raise NotFound(f"no model named {name!r} here.")
        raise ModelNotReady(f"model {name!r} has no runtime in this test.")

    @property
    def ready(self) -> bool:
        loaded = all(e.status is not ModelStatus.LOADING for e in self.entries.values())
        return loaded and self.in_sync and self.device_failure is None


@dataclass
class RunningGrpc:
    server: GrpcServer
    target: str
    budget: UploadBudget


ServerFactory = Callable[..., AbstractAsyncContextManager[RunningGrpc]]


@pytest.fixture
def grpc_server() -> ServerFactory:
    """``async with grpc_server(registry, **settings) as running``: a started server on a free
    loopback port, stopped on the way out."""

    @asynccontextmanager
    async def run(registry: Any = None, **overrides: Any) -> AsyncIterator[RunningGrpc]:
        port = free_port()
        values: dict[str, Any] = {"grpc_port": port, "models": (), "device": "cpu"}
        settings = Settings(**(values | overrides))
        budget = UploadBudget(settings.max_upload_bytes_in_flight)
        metrics = Metrics(torch.device("cpu"))
        registry = registry if registry is not None else FakeRegistry()
        server = await start_grpc_server(settings, registry, metrics, budget)
        assert server is not None
        try:
            yield RunningGrpc(server, f"127.0.0.1:{port}", budget)
        finally:
            await stop_grpc_server(server)

    return run
