"""Admin operations behind the bearer token: reinitialize and reload parameters."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app.api.deps import AdminDep, RegistryDep
from app.api.schemas import ErrorResponse, ParametersResponse, ReinitializeRequest
from app.errors import InvalidInput
from app.serving.reinit import InitPlan
from app.serving.runtime import ModelRuntime

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 404, 409, 422)
}

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[AdminDep], responses=_ERRORS)


def _parameters(name: str, runtime: ModelRuntime, seed: int | None = None) -> ParametersResponse:
    return ParametersResponse(
        model=name,
        parameters_sha256=runtime.state.sha256,
        parameters_version=runtime.state.version,
        training=runtime.module.training,
        device=str(runtime.device),
        seed=seed,
    )


@router.post("/models/{name}/reinitialize", response_model=ParametersResponse)
async def reinitialize_model(
    name: str, registry: RegistryDep, request: ReinitializeRequest | None = None
) -> ParametersResponse:
    """Reinitialize every parameter with a scheme (atomic w.r.t. in-flight batches)."""
    runtime = registry.runtime(name)
    request = request or ReinitializeRequest()
    try:
        plan = InitPlan(**request.model_dump())
    except ValueError as exc:
        raise InvalidInput(f"invalid reinitialize request: {exc}.") from exc
    seed = await runtime.reinitialize(plan)
    return _parameters(name, runtime, seed)


@router.post("/models/{name}/reload", response_model=ParametersResponse)
async def reload_model(name: str, registry: RegistryDep) -> ParametersResponse:
    """Restore the weights from their source (file re-verified), atomically."""
    runtime = registry.runtime(name)
    await runtime.reload()
    return _parameters(name, runtime)
