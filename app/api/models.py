"""Model listing and description."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import RegistryDep
from app.api.schemas import ErrorResponse, ModelInfo, ModelList
from app.serving.registry import ModelEntry, ModelRegistry

router = APIRouter(prefix="/v1", tags=["models"])


def describe(entry: ModelEntry, registry: ModelRegistry) -> ModelInfo:
    spec, runtime = entry.spec, entry.runtime
    details = runtime.describe() if runtime is not None else {}
    return ModelInfo(
        name=spec.name,
        kind=spec.kind.value,
        summary=spec.summary,
        status=entry.status.value,
        reason=entry.reason,
        device=str(registry.device),
        load_seconds=entry.load_seconds,
        **details,
    )


@router.get("/models", response_model=ModelList)
async def list_models(registry: RegistryDep) -> ModelList:
    """Every enabled model with its status, device and parameter checksum."""
    return ModelList(models=[describe(entry, registry) for entry in registry.entries.values()])


@router.get("/models/{name}", response_model=ModelInfo, responses={404: {"model": ErrorResponse}})
async def get_model(name: str, registry: RegistryDep) -> ModelInfo:
    """One model: status (and why, if not ready), device, dtype, checksum, labels, input."""
    return describe(registry.entry(name), registry)
