"""Admin operations behind the bearer token: reinitialize, reload, evaluate, accuracy."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from app.api.deps import AdminDep, EvaluatorDep, JobsDep, RegistryDep
from app.api.schemas import (
    AccuracyResponse,
    ErrorResponse,
    EvaluateRequest,
    JobAccepted,
    JobResponse,
    ParametersResponse,
    ReinitializeRequest,
)
from app.errors import InvalidInput
from app.serving.jobs import Job
from app.serving.reinit import InitPlan
from app.serving.runtime import ModelRuntime

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 409, 422)
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


def _job(job: Job) -> JobResponse:
    return JobResponse(
        job_id=job.id,
        kind=job.kind,
        model=job.model,
        status=job.status.value,
        progress={"done": job.done, "total": job.total},
        result=job.result,
        error=job.error,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
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


@router.post("/models/{name}/evaluate", status_code=202, response_model=JobAccepted)
async def evaluate_model(
    name: str,
    jobs: JobsDep,
    evaluator: EvaluatorDep,
    request: Request,
    body: EvaluateRequest | None = None,
) -> JobAccepted:
    """Start an evaluation on the held-out data; poll the returned job for progress."""
    job_fn = evaluator.plan(name, (body or EvaluateRequest()).image_folder)
    job = jobs.submit("evaluate", name, job_fn)
    return JobAccepted(job_id=job.id, status_url=str(request.url_for("get_job", job_id=job.id)))


@router.get("/jobs/{job_id}", response_model=JobResponse)
async def get_job(job_id: str, jobs: JobsDep) -> JobResponse:
    """A job's status, progress (done/total) and, once finished, its result or error."""
    return _job(jobs.get(job_id))


@router.get("/models/{name}/accuracy", response_model=AccuracyResponse)
async def get_accuracy(
    name: str, registry: RegistryDep, evaluator: EvaluatorDep
) -> AccuracyResponse:
    """The latest evaluation of this run, and the accuracy recorded with the weights."""
    runtime = registry.runtime(name)
    return AccuracyResponse(
        model=name, latest=evaluator.latest.get(name), recorded=runtime.recorded_accuracy()
    )
