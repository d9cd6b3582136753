"""grpc.health.v1.Health as grpc_health_probe, Kubernetes and client-side health checking see
it: NOT_SERVING while loading, SERVING once ready, per model, and NOT_SERVING from the drain."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from app.api.grpc.server import stop_grpc_server
from app.serving.registry import ModelStatus
from tests.helpers.grpc_servers import FakeRegistry, ServerFactory

pytestmark = pytest.mark.anyio
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE = "inference.GRPCInferenceService"


async def _check(stub: health_pb2_grpc.HealthStub, service: str) -> int:
    return (await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)).status


async def _next(watch: grpc.aio.UnaryStreamCall) -> int:
    return (await asyncio.wait_for(watch.read(), 5)).status


async def _until(stub: health_pb2_grpc.HealthStub, service: str, status: int) -> None:
    deadline = time.monotonic() + 5
    while await _check(stub, service) != status:
        assert time.monotonic() < deadline, f"{service!r} never became {status}"
        await asyncio.sleep(0.05)


async def test_check_follows_loading_then_readiness_per_model(
    grpc_server: ServerFactory,
) -> None:
    registry = FakeRegistry.of("cnn", "gan")
    async with (
        grpc_server(registry) as running,
        grpc.aio.insecure_channel(running.target) as channel,
    ):
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", SERVICE, "cnn", "gan"):
            assert await _check(stub, service) == NOT_SERVING
        registry.set("cnn", ModelStatus.READY)
        await _until(stub, "cnn", SERVING)
        assert await _check(stub, "") == NOT_SERVING  # gan is still loading
        registry.set("gan", ModelStatus.UNAVAILABLE)
        await _until(stub, "", SERVING)
        assert await _check(stub, SERVICE) == SERVING
        assert await _check(stub, "gan") == NOT_SERVING
        registry.device_failure = "CUDA error: lost"
        await _until(stub, "cnn", NOT_SERVING)
        assert await _check(stub, "") == NOT_SERVING
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await _check(stub, "bert")
        assert unknown.value.code() is grpc.StatusCode.NOT_FOUND
        assert "cnn, gan" in (unknown.value.details() or "")


async def test_watch_hears_every_change_of_its_service(grpc_server: ServerFactory) -> None:
    registry = FakeRegistry.of("cnn")
    async with (
        grpc_server(registry) as running,
        grpc.aio.insecure_channel(running.target) as channel,
    ):
        stub = health_pb2_grpc.HealthStub(channel)
        model, server = (stub.Watch(health_pb2.HealthCheckRequest(service=s)) for s in ("cnn", ""))
        leaving = stub.Watch(health_pb2.HealthCheckRequest(service="cnn"))
        assert [await _next(w) for w in (model, server, leaving)] == [NOT_SERVING] * 3
        leaving.cancel()  # one watcher of cnn leaves: the other must still hear of changes
        await asyncio.sleep(0.1)
        registry.set("cnn", ModelStatus.READY)
        assert await _next(model) == SERVING
        assert await _next(server) == SERVING
        registry.set("cnn", ModelStatus.ERROR)
        assert await _next(model) == NOT_SERVING
        unknown = stub.Watch(health_pb2.HealthCheckRequest(service="bert"))
        assert await _next(unknown) == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
        for watch in (model, server, unknown):
            watch.cancel()


async def test_from_the_drain_watchers_hear_not_serving_and_do_not_hold_the_stop(
    grpc_server: ServerFactory,
) -> None:
    registry = FakeRegistry.of("cnn")
    registry.set("cnn", ModelStatus.READY)
    async with (
        grpc_server(registry) as running,
        grpc.aio.insecure_channel(running.target) as channel,
    ):
        stub = health_pb2_grpc.HealthStub(channel)
        watches = [stub.Watch(health_pb2.HealthCheckRequest(service=s)) for s in ("", "cnn")]
        assert [await _next(w) for w in watches] == [SERVING, SERVING]
        started = time.monotonic()
        stopping = asyncio.create_task(stop_grpc_server(running.server))  # the drain's step
        assert [await _next(w) for w in watches] == [NOT_SERVING, NOT_SERVING]
        for watch in watches:  # then each stream ends, so the stop need not wait its grace
            assert await asyncio.wait_for(watch.read(), 5) is grpc.aio.EOF
            assert await watch.code() is grpc.StatusCode.OK
        await asyncio.wait_for(stopping, 10)
        assert time.monotonic() - started < 5
        with pytest.raises(grpc.aio.AioRpcError) as refused:  # and new calls are refused
            await _check(stub, "")
        assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
