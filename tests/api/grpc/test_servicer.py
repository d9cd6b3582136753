"""The servicer's own decisions, without a server: what ServerLive says after a device loss,
and how a call cancelled in its method is counted."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
import torch
from prometheus_client import generate_latest

from app.api.grpc.asgi import CallContext
from app.api.grpc.servicer import InferenceServicer
from app.config import Settings
from app.metrics import Metrics
from tests.helpers.metrics import metric_total

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(("failure", "live"), [(None, True), ("CUDA error: lost", False)])
async def test_server_live_is_false_once_the_device_failed_beyond_repair(
    failure: str | None, live: bool
) -> None:
    registry = SimpleNamespace(device_failure=failure)
    servicer = InferenceServicer(registry, Settings(), Metrics(torch.device("cpu")))  # type: ignore[arg-type]
    assert (await servicer._live()).live is live


class GrpcioContext:
    """What the servicer asks of grpcio's context, with the deadline's time left."""

    def __init__(self, remaining: float | None) -> None:
        self.remaining = remaining

    def invocation_metadata(self) -> tuple[()]:
        return ()

    def set_trailing_metadata(self, metadata: object) -> None:
        pass

    def peer(self) -> str:
        return "ipv4:127.0.0.1:5000"

    def time_remaining(self) -> float | None:
        return self.remaining


async def _cancelled_in_its_method(context: object) -> Metrics:
    metrics = Metrics(torch.device("cpu"))
    servicer = InferenceServicer(SimpleNamespace(), Settings(), metrics)  # type: ignore[arg-type]
    started = asyncio.Event()

    async def work() -> None:
        started.set()
        await asyncio.sleep(30)

    call = asyncio.create_task(servicer._call("ModelInfer", "cnn", context, work()))  # type: ignore[arg-type]
    await started.wait()
    call.cancel()  # what grpcio does when the client goes away or the deadline passes
    with pytest.raises(asyncio.CancelledError):
        await call
    return metrics


def _counted(metrics: Metrics, code: str) -> float:
    text = generate_latest(metrics.registry).decode()
    labels = {"model": "cnn", "method": "ModelInfer", "code": code}
    return metric_total(text, "torchgate_grpc_requests", **labels)


@pytest.mark.parametrize(
    ("remaining", "code"),
    [
        (None, "CANCELLED"),
        (4.5, "CANCELLED"),
        (0.0, "DEADLINE_EXCEEDED"),
        (-0.2, "DEADLINE_EXCEEDED"),
    ],
)
async def test_a_call_grpcio_cancels_is_counted_under_its_model(
    remaining: float | None, code: str
) -> None:
    metrics = await _cancelled_in_its_method(GrpcioContext(remaining))
    assert _counted(metrics, code) == 1


async def test_the_zttp_apps_calls_are_left_to_the_app_to_count() -> None:
    """GrpcAsgiApp counts its own cancelled calls (test_asgi.py), knowing which status they got."""
    metrics = await _cancelled_in_its_method(CallContext([], ("127.0.0.1", 5000)))
    assert _counted(metrics, "CANCELLED") == _counted(metrics, "DEADLINE_EXCEEDED") == 0
