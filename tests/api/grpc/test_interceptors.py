"""The interceptors' own decisions, without a server: status codes by exception class, and how
a call that grpcio cancels in its method is counted."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import grpc
import pytest
import torch
from prometheus_client import generate_latest

from app.api.grpc.interceptors import CallObserver
from app.api.grpc.status import status_code
from app.errors import (
    BadRequest,
    DeviceUnavailable,
    Forbidden,
    InvalidInput,
    ModelNotReady,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    ReloadFailed,
    TorchgateError,
    Unauthorized,
    UnsupportedMediaType,
)
from app.metrics import Metrics
from tests.helpers.metrics import metric_total

pytestmark = pytest.mark.anyio
Code = grpc.StatusCode


class RetryableOverload(Overloaded):
    """A subclass the table does not name: it answers as its parent."""


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (BadRequest, Code.INVALID_ARGUMENT),
        (InvalidInput, Code.INVALID_ARGUMENT),
        (UnsupportedMediaType, Code.INVALID_ARGUMENT),
        (NotFound, Code.NOT_FOUND),
        (ModelNotReady, Code.FAILED_PRECONDITION),
        (ReloadFailed, Code.FAILED_PRECONDITION),
        (PayloadTooLarge, Code.RESOURCE_EXHAUSTED),
        (Overloaded, Code.RESOURCE_EXHAUSTED),
        (RetryableOverload, Code.RESOURCE_EXHAUSTED),
        (DeviceUnavailable, Code.UNAVAILABLE),
        (Unauthorized, Code.UNAUTHENTICATED),
        (Forbidden, Code.PERMISSION_DENIED),
    ],
)
def test_domain_errors_map_by_class(error: type[TorchgateError], code: Code) -> None:
    assert status_code(error("what to change")) is code


@pytest.mark.parametrize("error", [TorchgateError("x"), RuntimeError("x"), KeyError("x")])
def test_anything_else_is_left_to_be_internal(error: Exception) -> None:
    assert status_code(error) is None


class Context:
    """What the observer asks of grpcio's context, with the deadline's time left."""

    def __init__(self, remaining: float | None) -> None:
        self.remaining = remaining

    def invocation_metadata(self) -> tuple[()]:
        return ()

    def set_trailing_metadata(self, metadata: object) -> None:
        pass

    def code(self) -> None:
        return None

    def peer(self) -> str:
        return "ipv4:127.0.0.1:5000"

    def time_remaining(self) -> float | None:
        return self.remaining


async def _cancelled_in_its_method(remaining: float | None) -> Metrics:
    metrics = Metrics(torch.device("cpu"))
    started = asyncio.Event()

    async def method(request: object, context: object) -> None:
        started.set()
        await asyncio.sleep(30)

    async def continuation(details: object) -> grpc.RpcMethodHandler:
        return grpc.unary_unary_rpc_method_handler(method)

    details = SimpleNamespace(
        method="/inference.GRPCInferenceService/ModelInfer", invocation_metadata=()
    )
    handler = await CallObserver(metrics, access_log=False).intercept_service(
        continuation,
        details,  # type: ignore[arg-type]
    )
    call = asyncio.create_task(handler.unary_unary(None, Context(remaining)))
    await started.wait()
    call.cancel()  # what grpcio does when the client goes away or the deadline passes
    with pytest.raises(asyncio.CancelledError):
        await call
    return metrics


@pytest.mark.parametrize(
    ("remaining", "code"),
    [(None, "CANCELLED"), (4.5, "CANCELLED"), (0.0, "DEADLINE_EXCEEDED")],
)
async def test_a_call_grpcio_cancels_is_counted(remaining: float | None, code: str) -> None:
    metrics = await _cancelled_in_its_method(remaining)
    text = generate_latest(metrics.registry).decode()
    labels = {"model": "", "method": "ModelInfer", "code": code}
    assert metric_total(text, "torchgate_grpc_requests", **labels) == 1
