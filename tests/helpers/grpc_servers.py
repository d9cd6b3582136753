"""gRPC servers for tests: a registry the test controls (for what needs no model), a started
server in the test's loop, the real server with small limits, and cnn calls to drive them."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import httpx

from app.api.grpc.proto import inference_pb2 as pb
from app.api.grpc.proto import inference_pb2_grpc
from app.api.grpc.server import GrpcServer
from app.api.upload_budget import UploadBudget
from app.errors import ModelNotReady, NotFound
from app.serving.registry import ModelStatus

MAX_RPCS, MAX_STREAMS, MAX_CONNECTIONS = 48, 96, 40
MESSAGE_TIMEOUT_S = 3.0
INFER = "/inference.GRPCInferenceService/ModelInfer"
INVALID_ARGUMENT, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED = 3, 8, 4
REFUSED_STREAM, ENHANCE_YOUR_CALM = 7, 11


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


def cnn_request(images: int = 1) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="cnn")
    request.inputs.add(name="input", datatype="FP32", shape=[images, 1, 28, 28])
    request.raw_input_contents.append(bytes(images * 3136))
    return request


def infer_cnn(target: str, timeout: float = 10) -> pb.ModelInferResponse:
    with grpc.insecure_channel(target) as channel:
        stub = inference_pb2_grpc.GRPCInferenceServiceStub(channel)
        return stub.ModelInfer(cnn_request(), timeout=timeout)
