"""Fixtures of the gRPC tests: clients of the real server the session shares, and a gRPC server
in the test's event loop over a registry the test controls, for what needs no model (health,
reflection, TLS, the shared upload budget)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
import httpx
import pytest
import torch
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2_grpc

from app.api.grpc.server import start_grpc_server, stop_grpc_server
from app.api.upload_budget import UploadBudget
from app.config import Settings
from app.metrics import Metrics
from tests.helpers.grpc_servers import (
    MAX_CONNECTIONS,
    MAX_RPCS,
    MAX_STREAMS,
    MESSAGE_TIMEOUT_S,
    FakeRegistry,
    LimitedServer,
    RunningGrpc,
    ServerFactory,
)
from tests.helpers.servers import RealServer, free_port, serve_process
from tests.helpers.weights import fashion_checkpoints


@pytest.fixture(scope="module")
def client(real_server: RealServer) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(real_server.grpc)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="module")
def stub(real_server: RealServer) -> Iterator[service_pb2_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(real_server.grpc) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


@pytest.fixture(scope="module")
def http(real_server: RealServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=real_server.http, timeout=60) as client:
        yield client


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


@pytest.fixture(scope="package")
def limited_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LimitedServer]:
    directory = tmp_path_factory.mktemp("grpc-hardening")
    grpc_port = free_port()
    env = {
        "TORCHGATE_MODELS": "cnn",
        "TORCHGATE_DEVICE": "cpu",
        "TORCHGATE_CHECKPOINT_DIR": str(fashion_checkpoints(directory / "models")),
        "TORCHGATE_LOG_FORMAT": "json",
        "TORCHGATE_GRPC_PORT": str(grpc_port),
        "TORCHGATE_MAX_UPLOAD_BYTES": str(3 * 2**20),
        "TORCHGATE_GRPC_MAX_CONCURRENT_RPCS": str(MAX_RPCS),
        "TORCHGATE_GRPC_MAX_CONCURRENT_STREAMS": str(MAX_STREAMS),
        "TORCHGATE_GRPC_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
        "TORCHGATE_GRPC_MESSAGE_TIMEOUT_S": str(MESSAGE_TIMEOUT_S),
        "TORCHGATE_GRPC_HANDSHAKE_TIMEOUT_S": "1",
    }
    log = directory / "server.log"
    with serve_process(env, log) as (port, process):
        yield LimitedServer(f"http://127.0.0.1:{port}", f"127.0.0.1:{grpc_port}", process.pid, log)
