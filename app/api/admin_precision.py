"""Precision trials behind the admin token: a candidate dtype measured against float32 on the
model's evaluation set, promoted in every process only if it keeps the accuracy.

Included into the admin router (its prefix, token guard and process header apply).
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request

from app.api.deps import JobsDep, TrialsDep
from app.api.schemas import JobAccepted, PrecisionRequest
from app.serving.precision_jobs import PrecisionPlan

router = APIRouter()


@router.post("/models/{name}/precision", status_code=202, response_model=JobAccepted)
async def change_precision(
    name: str, body: PrecisionRequest, jobs: JobsDep, trials: TrialsDep, request: Request
) -> JobAccepted:
    """Trial a precision against float32; every process switches only if accuracy holds."""
    # plan() probes the device and checks the folder now (400 at submit), off the loop
    job_fn = await asyncio.to_thread(trials.plan, name, PrecisionPlan(**body.model_dump()))
    job = await jobs.submit("precision", name, job_fn)
    return JobAccepted(job_id=job.id, status_url=str(request.url_for("get_job", job_id=job.id)))
