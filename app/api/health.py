"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from app.api.deps import RegistryDep
from app.api.schemas import HealthResponse
from app.responses import FastJSONResponse
from app.serving.registry import ModelStatus

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthResponse)
async def get_liveness() -> FastJSONResponse:
    """Liveness: the process is up and the event loop answers."""
    return FastJSONResponse({"status": "ok", "models": {}})


@router.get(
    "/readyz",
    response_model=HealthResponse,
    responses={503: {"model": HealthResponse, "description": "Models are still loading."}},
)
async def get_readiness(registry: RegistryDep) -> FastJSONResponse:
    """Readiness: 200 once every enabled model has finished loading (ready or unavailable)."""
    statuses = {name: entry.status.value for name, entry in registry.entries.items()}
    if registry.ready:
        return FastJSONResponse({"status": "ready", "models": statuses})
    return FastJSONResponse({"status": "loading", "models": statuses}, status_code=503)


@router.get("/metrics", response_class=Response)
async def get_metrics(request: Request, registry: RegistryDep) -> Response:
    """Prometheus metrics in the text exposition format."""
    metrics = request.app.state.metrics
    for name, entry in registry.entries.items():
        for status in ModelStatus:
            metrics.model_status.labels(name, status.value).set(int(entry.status is status))
    return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
