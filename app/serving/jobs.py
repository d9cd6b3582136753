"""Background jobs (evaluations): run in a thread, report progress, keep a bounded history."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from app.errors import NotFound, TorchgateError

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
JobFn = Callable[[Progress], dict[str, Any]]


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass
class Job:
    id: str
    kind: str
    model: str
    status: JobStatus = JobStatus.QUEUED
    done: int = 0
    total: int = 0
    result: dict[str, Any] | None = None
    error: str | None = None
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def active(self) -> bool:
        return self.status in (JobStatus.QUEUED, JobStatus.RUNNING)


class JobConflict(TorchgateError):
    status_code = 409


class JobStore:
    """One active job per (kind, model); finished jobs kept up to ``history`` entries."""

    def __init__(self, history: int = 100) -> None:
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()
        self._history = history

    def get(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(f"no job {job_id!r}; jobs are kept in memory until restart.")
        return job

    def submit(self, kind: str, model: str, fn: JobFn) -> Job:
        for job in self._jobs.values():
            if job.kind == kind and job.model == model and job.active:
                raise JobConflict(
                    f"a {kind} job for {model!r} is already running (job {job.id}); "
                    f"poll GET /admin/jobs/{job.id}."
                )
        job = Job(id=uuid.uuid4().hex, kind=kind, model=model)
        self._jobs[job.id] = job
        self._trim()
        task = asyncio.get_running_loop().create_task(self._run(job, fn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def _run(self, job: Job, fn: JobFn) -> None:
        def progress(done: int, total: int) -> None:
            job.done, job.total = done, total

        job.status, job.started_at = JobStatus.RUNNING, time.time()
        try:
            job.result = await asyncio.to_thread(fn, progress)
        except TorchgateError as exc:
            job.status, job.error = JobStatus.FAILED, exc.detail
        except Exception as exc:
            logger.exception("%s job %s for %s failed", job.kind, job.id, job.model)
            job.status, job.error = JobStatus.FAILED, f"{type(exc).__name__}: {exc}"
        else:
            job.status = JobStatus.SUCCEEDED
        finally:
            job.finished_at = time.time()

    def _trim(self) -> None:
        finished = [j.id for j in self._jobs.values() if not j.active]
        for job_id in finished[: max(0, len(self._jobs) - self._history)]:
            del self._jobs[job_id]

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
