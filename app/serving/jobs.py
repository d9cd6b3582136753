"""Background jobs (evaluations), kept in the control store so any process can answer for them.

The process that accepts a job runs it, under a lease it renews while the job runs; if that
process dies, the lease runs out and another process marks the job failed with the reason
(``ParameterSync`` calls ``expire_jobs`` on every heartbeat). Progress is written at most
every ``PROGRESS_INTERVAL_S``, so a fast job does not hammer the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from app.errors import NotFound, TorchgateError
from app.serving.store import ControlStore, JobRecord, StoreUnavailable

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
JobFn = Callable[[Progress], dict[str, Any]]
PROGRESS_INTERVAL_S = 0.2
_FINAL_WRITE_RETRY_S = 1.0


class Jobs:
    """Starts jobs on this process and reads any process's jobs from the store."""

    def __init__(self, store: ControlStore, process_id: str) -> None:
        self.store = store
        self.process_id = process_id
        self._tasks: set[asyncio.Task[None]] = set()

    async def get(self, job_id: str) -> JobRecord:
        job = await asyncio.to_thread(self.store.get_job, job_id)
        if job is None:
            raise NotFound(f"no job {job_id!r}; finished jobs are kept for a while, then dropped.")
        return job

    async def submit(self, kind: str, model: str, fn: JobFn) -> JobRecord:
        """Record the job (409 if one of the same kind and model is active anywhere), then
        run it here in a thread."""
        job = JobRecord(id=uuid.uuid4().hex, kind=kind, model=model, owner=self.process_id)
        await asyncio.to_thread(self.store.create_job, job)
        task = asyncio.get_running_loop().create_task(self._run(job, fn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def _run(self, job: JobRecord, fn: JobFn) -> None:
        lock = threading.Lock()  # the job's thread and the lease renewal both write it
        last_write = 0.0

        def write() -> None:
            with lock:
                self.store.update_job(job)

        def progress(done: int, total: int) -> None:
            nonlocal last_write
            job.done, job.total = done, total
            if time.monotonic() - last_write >= PROGRESS_INTERVAL_S or done >= total:
                last_write = time.monotonic()
                with contextlib.suppress(StoreUnavailable):  # the next write carries it
                    write()

        job.status, job.started_at = "running", time.time()
        renewal = asyncio.create_task(self._renew_lease(write))
        try:
            await asyncio.to_thread(write)
            job.result = await asyncio.to_thread(fn, progress)
        except asyncio.CancelledError:
            job.status, job.error = "failed", "the process running this job was stopped."
            job.finished_at = time.time()
            renewal.cancel()
            try:
                await asyncio.shield(asyncio.to_thread(write))
            finally:
                raise
        except TorchgateError as exc:
            job.status, job.error = "failed", exc.detail
        except Exception as exc:
            logger.exception("%s job %s for %s failed", job.kind, job.id, job.model)
            job.status, job.error = "failed", f"{type(exc).__name__}: {exc}"
        else:
            job.status = "succeeded"
        finally:
            renewal.cancel()
            job.finished_at = time.time()
        await self._write_final(write)

    async def _renew_lease(self, write: Callable[[], None]) -> None:
        while True:
            await asyncio.sleep(self.store.job_lease_s / 3)
            with contextlib.suppress(StoreUnavailable):
                await asyncio.to_thread(write)

    async def _write_final(self, write: Callable[[], None]) -> None:
        """The outcome must reach the store: retry while it is away (until shutdown)."""
        while True:
            try:
                await asyncio.to_thread(write)
                return
            except StoreUnavailable as exc:
                logger.warning("job outcome not stored yet: %s", exc.detail)
                await asyncio.sleep(_FINAL_WRITE_RETRY_S)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
