"""Admin operations behind the bearer token: reinitialize, reload, evaluate, jobs, accuracy.

A parameter change is a record in the control store; the call answers once every live
process serving the model has applied it (or ``TORCHGATE_ADMIN_WAIT_S`` ran out), listing each.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from app.api import admin_precision
from app.api.deps import AdminDep, EvaluatorDep, JobsDep, RegistryDep, SyncDep
from app.api.schemas import (
    AccuracyResponse,
    ErrorResponse,
    EvaluateRequest,
    FailedRecordInfo,
    JobAccepted,
    JobResponse,
    ParametersResponse,
    ProcessParameters,
    ReinitializeRequest,
    SkippedEntryInfo,
)
from app.errors import InvalidInput
from app.serving.reinit import InitPlan
from app.serving.runtime import ModelRuntime
from app.serving.store import JobRecord
from app.serving.sync import FanOut

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 409, 422, 503)
}

PROCESS_HEADER = "X-Torchgate-Process"


async def _name_the_process(response: Response, sync: SyncDep) -> None:
    """Admin answers say which process (host:pid) gave them: with many workers or replicas
    behind one address, that is how an operator tells them apart."""
    response.headers[PROCESS_HEADER] = sync.process_id


router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    dependencies=[AdminDep, Depends(_name_the_process)],
    responses=_ERRORS,
)


def _parameters(runtime: ModelRuntime, fan_out: FanOut, seed: int | None) -> ParametersResponse:
    return ParametersResponse(
        model=runtime.spec.name,
        parameters_sha256=runtime.sha256_of(fan_out.record.version) or runtime.state.sha256,
        parameters_version=fan_out.record.version,
        training=runtime.module.training,
        device=str(runtime.device),
        seed=seed,
        converged=fan_out.converged,
        processes=[
            ProcessParameters(
                process_id=report.process_id,
                parameters_version=report.version,
                parameters_sha256=report.sha256,
                ok=report.ok,
                error=report.error,
                applied_at=report.applied_at,
            )
            for report in fan_out.reports
        ],
        failed_records=[
            FailedRecordInfo.model_validate(failed, from_attributes=True)
            for failed in fan_out.failed_records
        ],
        skipped_entries=[
            SkippedEntryInfo.model_validate(entry, from_attributes=True)
            for entry in fan_out.skipped
        ],
    )


def _job(job: JobRecord) -> JobResponse:
    return JobResponse(
        job_id=job.id,
        kind=job.kind,
        model=job.model,
        owner=job.owner,
        status=job.status,  # type: ignore[arg-type]
        progress={"done": job.done, "total": job.total},
        result=job.result,
        error=job.error,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


@router.post("/models/{name}/reinitialize", response_model=ParametersResponse)
async def reinitialize_model(
    name: str, registry: RegistryDep, sync: SyncDep, request: ReinitializeRequest | None = None
) -> ParametersResponse:
    """Reinitialize every parameter with a scheme, in every process (seeded: byte-identical)."""
    runtime = registry.runtime(name)
    request = request or ReinitializeRequest()
    seed = request.seed if request.seed is not None else secrets.randbits(63)
    try:
        plan = InitPlan(**{**request.model_dump(), "seed": seed})
    except ValueError as exc:
        raise InvalidInput(f"invalid reinitialize request: {exc}.") from exc
    fan_out = await sync.change(name, "reinitialize", asdict(plan))
    return _parameters(runtime, fan_out, seed)


@router.post("/models/{name}/reload", response_model=ParametersResponse)
async def reload_model(name: str, registry: RegistryDep, sync: SyncDep) -> ParametersResponse:
    """Restore the weights from their source (file re-verified), in every process."""
    runtime = registry.runtime(name)
    await runtime.read_state()  # an unreadable source is a 409 here, before anything is recorded
    fan_out = await sync.change(name, "reload", {})
    return _parameters(runtime, fan_out, None)


@router.post("/models/{name}/evaluate", status_code=202, response_model=JobAccepted)
async def evaluate_model(
    name: str,
    jobs: JobsDep,
    evaluator: EvaluatorDep,
    request: Request,
    body: EvaluateRequest | None = None,
) -> JobAccepted:
    """Start an evaluation on the held-out data; poll the returned job from any process."""
    # plan() checks the folder and its layout now (400 at submit): file-system work, off the loop
    job_fn = await asyncio.to_thread(evaluator.plan, name, (body or EvaluateRequest()).image_folder)
    job = await jobs.submit("evaluate", name, job_fn)
    return JobAccepted(job_id=job.id, status_url=str(request.url_for("get_job", job_id=job.id)))


@router.get("/jobs/{job_id}", response_model=JobResponse)
async def get_job(job_id: str, jobs: JobsDep) -> JobResponse:
    """A job's status, progress (done/total) and, once finished, its result or error."""
    return _job(await jobs.get(job_id))


@router.delete("/jobs/{job_id}", response_model=JobResponse)
async def cancel_job(job_id: str, jobs: JobsDep) -> JobResponse:
    """Cancel a queued or running job: it ends cancelled and frees its model's slot at once."""
    return _job(await jobs.cancel(job_id))


@router.get("/models/{name}/accuracy", response_model=AccuracyResponse)
async def get_accuracy(
    name: str, registry: RegistryDep, evaluator: EvaluatorDep
) -> AccuracyResponse:
    """The latest evaluation (by any process), and the accuracy recorded with the weights."""
    runtime = registry.runtime(name)
    return AccuracyResponse(
        model=name, latest=await evaluator.latest(name), recorded=runtime.recorded_accuracy()
    )


router.include_router(admin_precision.router)
