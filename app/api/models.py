"""Model listing and description."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import RegistryDep, SyncDep
from app.api.schemas import ErrorResponse, FailedRecordInfo, ModelInfo, ModelList
from app.serving.registry import ModelEntry, ModelRegistry
from app.serving.sync import ParameterSync

router = APIRouter(prefix="/v1", tags=["models"])


def describe(entry: ModelEntry, registry: ModelRegistry, sync: ParameterSync) -> ModelInfo:
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
        failed_records=[
            FailedRecordInfo.model_validate(failed, from_attributes=True)
            for failed in sync.failed_records.get(spec.name, [])
        ],
        **details,
    )


@router.get("/models", response_model=ModelList)
async def list_models(registry: RegistryDep, sync: SyncDep) -> ModelList:
    """Every enabled model with its status, device and parameter checksum."""
    entries = registry.entries.values()
    return ModelList(models=[describe(entry, registry, sync) for entry in entries])


@router.get("/models/{name}", response_model=ModelInfo, responses={404: {"model": ErrorResponse}})
async def get_model(name: str, registry: RegistryDep, sync: SyncDep) -> ModelInfo:
    """One model: status (and why, if not ready), device, dtype, checksum, labels, input, and
    the parameter changes that could not be applied."""
    return describe(registry.entry(name), registry, sync)
