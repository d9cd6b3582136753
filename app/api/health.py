"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from app.api.deps import RegistryDep, SyncDep, liveness_failure
from app.api.responses import FastJSONResponse
from app.api.schemas import HealthResponse

router = APIRouter(tags=["health"])


@router.get(
    "/healthz",
    response_model=HealthResponse,
    responses={
        503: {
            "model": HealthResponse,
            "description": "The device failed beyond repair (a sticky CUDA error), or the "
            "control-store sync completed no tick for TORCHGATE_SYNC_STALL_S: only a restart "
            "brings the process back, which a liveness probe asks for.",
        }
    },
)
async def get_liveness(request: Request) -> FastJSONResponse:
    """Liveness: the process is up, the event loop answers, its device still works and its
    parameter sync still ticks."""
    failure = liveness_failure(request)
    if failure is not None:
        return FastJSONResponse({"status": "failed", "detail": failure}, status_code=503)
    return FastJSONResponse({"status": "ok", "models": {}})


@router.get(
    "/readyz",
    response_model=HealthResponse,
    responses={
        503: {
            "model": HealthResponse,
            "description": "Models are still loading, the process is catching up with the "
            "control store, its device failed, or it is shutting down.",
        }
    },
)
async def get_readiness(request: Request, registry: RegistryDep, sync: SyncDep) -> FastJSONResponse:
    """Readiness: 200 once every enabled model has finished loading (ready or unavailable)
    and this process has replayed the control store's parameter changes, until it stops."""
    statuses = {name: entry.status.value for name, entry in registry.entries.items()}
    if request.app.state.drain.started:  # the stop signal came: send new work elsewhere
        detail = "shutting down: finishing the requests in flight, taking no new ones"
        body = {"status": "draining", "detail": detail, "models": statuses}
        return FastJSONResponse(body, status_code=503)
    if registry.ready:
        return FastJSONResponse({"status": "ready", "models": statuses})
    body: dict[str, object] = {"status": "syncing" if registry.loaded else "loading"}
    if registry.device_failure is not None:
        body = {"status": "failed", "detail": registry.device_failure}
    elif registry.loaded:
        body["detail"] = sync.store_error or "replaying the control store's parameter changes"
    return FastJSONResponse({**body, "models": statuses}, status_code=503)


@router.get("/metrics", response_class=Response)
async def get_metrics(request: Request, registry: RegistryDep) -> Response:
    """Prometheus metrics in the text exposition format."""
    metrics = request.app.state.metrics
    metrics.sample_gauges(*registry.gauge_samples())
    return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
