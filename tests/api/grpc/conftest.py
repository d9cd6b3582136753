"""Fixtures of the gRPC tests: clients of the real server the session shares, and a gRPC server
in the test's event loop over a registry the test controls, for what needs no model (health,
reflection, TLS, the shared upload budget)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import httpx
import pytest
import torch
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2_grpc

from app.api.grpc.proto import inference_pb2 as pb
from app.api.grpc.proto import inference_pb2_grpc
from app.api.grpc.server import GrpcServer, start_grpc_server, stop_grpc_server
from app.api.upload_budget import UploadBudget
from app.config import Settings
from app.errors import ModelNotReady, NotFound
from app.metrics import Metrics
from app.serving.registry import ModelStatus
from tests.conftest import RealServer, fashion_checkpoints, free_port, serve_process

MAX_RPCS, MAX_STREAMS, MAX_CONNECTIONS = 48, 96, 40
MESSAGE_TIMEOUT_S = 3.0
INFER = "/inference.GRPCInferenceService/ModelInfer"
INVALID_ARGUMENT, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED = 3, 8, 4
REFUSED_STREAM, ENHANCE_YOUR_CALM = 7, 11


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
    def liveness_failure(self) -> str | None:
        return self.device_failure

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


class LimitedServer:
    """A real ``python -m app serve`` (the cnn) with small gRPC limits, shared by the modules
    that test them: where it answers, its process, its log."""

    def __init__(self, http: str, grpc_target: str, pid: int, log: Path) -> None:
        self.http, self.target, self.pid, self.log = http, grpc_target, pid, log

    def rss_mib(self) -> float:
        status = Path(f"/proc/{self.pid}/status").read_text()
        line = next(line for line in status.splitlines() if line.startswith("VmRSS"))
        return int(line.split()[1]) / 1024

    def metrics(self) -> str:
        return httpx.get(f"{self.http}/metrics", timeout=10).text


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


def cnn_request(images: int = 1) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="cnn")
    request.inputs.add(name="input", datatype="FP32", shape=[images, 1, 28, 28])
    request.raw_input_contents.append(bytes(images * 3136))
    return request


def infer_cnn(target: str, timeout: float = 10) -> pb.ModelInferResponse:
    with grpc.insecure_channel(target) as channel:
        stub = inference_pb2_grpc.GRPCInferenceServiceStub(channel)
        return stub.ModelInfer(cnn_request(), timeout=timeout)
