"""``grpc.health.v1.Health`` over the registry's readiness: what grpc_health_probe, Kubernetes'
gRPC probes and grpc's client-side health checking call.

Services: "" and ``inference.GRPCInferenceService`` are SERVING once the registry is ready (as
/readyz answers 200), and one service per enabled model is SERVING while that model serves; all
are NOT_SERVING while loading and from the drain on. Check looks at the registry when asked; the
registry has no hooks, so for Watch streams a task also looks every POLL_S and tells them of
changes. At the drain, watchers get NOT_SERVING and their streams end, so they do not hold the
server's stop for its whole grace.

grpcio-health-checking's messages and service stubs are used, not its aio servicer: its Watch
forgets a service's watchers when any one of them leaves, so the others never hear of a change.
"""

from __future__ import annotations

import asyncio
import contextlib

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from app.api.grpc.servicer import SERVICE
from app.errors import NotFound
from app.serving.registry import ModelRegistry, ModelStatus

SERVICE_NAME = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
POLL_S = 0.25


def statuses_of(registry: ModelRegistry) -> dict[str, int]:
    """Every service's status now: the server's as /readyz, each model's as its calls would."""
    server = SERVING if registry.ready else NOT_SERVING
    statuses = {"": server, SERVICE: server}
    usable = registry.in_sync and registry.device_failure is None
    for name, entry in registry.entries.items():
        serves = usable and entry.status is ModelStatus.READY
        statuses[name] = SERVING if serves else NOT_SERVING
    return statuses


class Health(health_pb2_grpc.HealthServicer):
    """Check and Watch over the registry's statuses, looked at on each call and every POLL_S."""

    def __init__(self, registry: ModelRegistry) -> None:
        self._registry = registry
        self._statuses = statuses_of(registry)
        self._changed = asyncio.Condition()
        self._final = False
        self._task: asyncio.Task[None] | None = None

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        await self.refresh()
        status = self._statuses.get(request.service)
        if status is None:
            models = [name for name in self._statuses if name not in ("", SERVICE)]
            raise NotFound(
                f"no service {request.service!r} here; ask for '' (the server), {SERVICE} "
                f"or a model ({', '.join(models) or 'none enabled'})."
            )
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> None:
        service, sent = request.service, None

        def news() -> bool:
            return self._final or self._statuses.get(service, SERVICE_UNKNOWN) != sent

        await self.refresh()
        while True:
            status = self._statuses.get(service, SERVICE_UNKNOWN)
            if status != sent:
                await context.write(health_pb2.HealthCheckResponse(status=status))
                sent = status
            if self._final:
                return
            async with self._changed:
                await self._changed.wait_for(news)

    async def refresh(self) -> None:
        """Take the registry's statuses of now, waking the watchers when they changed (not
        after the drain: from then on everything stays NOT_SERVING)."""
        statuses = statuses_of(self._registry)
        if self._final or statuses == self._statuses:
            return
        async with self._changed:
            self._statuses = statuses
            self._changed.notify_all()

    def follow(self) -> None:
        """Keep the statuses up to date until ``shut_down`` (the registry has no hooks)."""

        async def poll() -> None:
            while True:
                await self.refresh()
                await asyncio.sleep(POLL_S)

        self._task = asyncio.create_task(poll(), name="grpc-health")

    async def shut_down(self) -> None:
        """Everything NOT_SERVING, for good; watchers are told and their streams end."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        async with self._changed:
            self._statuses = dict.fromkeys(self._statuses, NOT_SERVING)
            self._final = True
            self._changed.notify_all()
