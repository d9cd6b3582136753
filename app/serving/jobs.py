"""Background jobs (evaluations), kept in the control store so any process can answer for them.

The process that accepts a job runs it, under a lease it renews only while the job makes
progress: its done counter moved, or one of its forwards completed, within
``TORCHGATE_JOB_PROGRESS_TIMEOUT_S``. A job that stands still longer is ended ``failed`` with
that reason, which frees its model's slot; if its process dies, the lease runs out and another
process marks it failed (``ParameterSync`` calls ``expire_jobs`` on every heartbeat). A job
cancelled from any process (``DELETE /admin/jobs/{id}``) ends ``cancelled`` in the store at
once. Either way the job's thread stops at its next batch. Progress is written at most every
``PROGRESS_INTERVAL_S``, so a fast job does not hammer the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from app.errors import Conflict, NotFound, TorchgateError
from app.serving.store import ControlStore, JobRecord, StoreUnavailable

logger = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 0.2
MAX_JOB_THREADS = 16
_FINAL_WRITE_RETRY_S = 1.0


class Progress(Protocol):
    """What a job's thread reports through; either call raises ``JobStopped`` once the job
    was ended elsewhere, so the thread stops at its next batch."""

    def __call__(self, done: int, total: int) -> None:
        """``done`` of ``total`` units finished (after every batch)."""

    def beat(self) -> None:
        """A forward completed: the job is alive even if its done counter did not move."""


JobFn = Callable[[Progress], dict[str, Any]]


class JobStopped(TorchgateError):
    """The job was cancelled, or ended for standing still: its thread stops here."""


class _Tracker:
    """The running job's side of ``Progress``: counts movements and carries the stop."""

    def __init__(self, job: JobRecord, write: Callable[[], bool]) -> None:
        self.job = job
        self.moves = 0
        self.stopped: str | None = None  # why the job ended elsewhere; its thread stops
        self._write = write
        self._last_write = 0.0

    def __call__(self, done: int, total: int) -> None:
        self._check()
        if done != self.job.done:
            self.moves += 1
        self.job.done, self.job.total = done, total
        if time.monotonic() - self._last_write >= PROGRESS_INTERVAL_S or done >= total:
            self._last_write = time.monotonic()
            with contextlib.suppress(StoreUnavailable):  # the next write carries it
                if not self._write():
                    self.stop("the job was ended elsewhere (cancelled, or its lease ran out)")
            self._check()

    def beat(self) -> None:
        self._check()
        self.moves += 1

    def stop(self, reason: str) -> None:
        if self.stopped is None:
            self.stopped = reason

    def _check(self) -> None:
        if self.stopped is not None:
            raise JobStopped(self.stopped)


class Jobs:
    """Starts jobs on this process and reads any process's jobs from the store."""

    def __init__(
        self, store: ControlStore, process_id: str, progress_timeout_s: float = 120.0
    ) -> None:
        self.store = store
        self.process_id = process_id
        self.progress_timeout_s = progress_timeout_s
        self._tasks: set[asyncio.Task[None]] = set()
        self._running: dict[str, _Tracker] = {}
        # Jobs' own threads (one job per kind and model at a time, so few): a long evaluation
        # or precision trial must not hold the default executor that requests' to_thread uses.
        self._threads = ThreadPoolExecutor(MAX_JOB_THREADS, thread_name_prefix="job")

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

    async def cancel(self, job_id: str) -> JobRecord:
        """End the job ``cancelled`` in the store (its slot is free at once); its thread, here
        or on the process that runs it, stops at its next batch. 409 once it has finished."""
        job = await asyncio.to_thread(self.store.cancel_job, job_id)
        if job is None:
            raise NotFound(f"no job {job_id!r}; finished jobs are kept for a while, then dropped.")
        if job.status != "cancelled":
            raise Conflict(f"job {job_id} has already {job.status}; there is nothing to cancel.")
        tracker = self._running.get(job_id)
        if tracker is not None:
            tracker.stop(job.error or "cancelled")
        return job

    async def _run(self, job: JobRecord, fn: JobFn) -> None:
        lock = threading.Lock()  # the job's thread and the lease keeper both write it

        def write() -> bool:
            with lock:
                return self.store.update_job(job)

        def end(reason: str) -> bool:
            with lock:
                job.status, job.error, job.finished_at = "failed", reason, time.time()
                return self.store.update_job(job)

        tracker = self._running[job.id] = _Tracker(job, write)
        job.status, job.started_at = "running", time.time()
        keeper = asyncio.create_task(self._keep_lease(tracker, write, end))
        try:
            if not await asyncio.to_thread(write):
                raise JobStopped("the job was cancelled before it started")
            loop = asyncio.get_running_loop()
            job.result = await loop.run_in_executor(self._threads, fn, tracker)
        except asyncio.CancelledError:
            tracker.stop("the process running this job was stopped")  # its thread stops too
            job.status, job.error = "failed", "the process running this job was stopped."
            job.finished_at = time.time()
            keeper.cancel()
            try:
                await asyncio.shield(asyncio.to_thread(write))
            finally:
                raise
        except JobStopped as exc:
            tracker.stop(exc.detail)  # the store holds how it ended
        except TorchgateError as exc:
            job.status, job.error = "failed", exc.detail
        except Exception as exc:
            logger.exception("%s job %s for %s failed", job.kind, job.id, job.model)
            job.status, job.error = "failed", f"{type(exc).__name__}: {exc}"
        else:
            job.status = "succeeded"
        finally:
            keeper.cancel()
            self._running.pop(job.id, None)
            job.finished_at = time.time()
        if tracker.stopped is None:  # else the store already holds how it ended
            await self._write_final(write)

    async def _keep_lease(
        self, tracker: _Tracker, write: Callable[[], bool], end: Callable[[str], bool]
    ) -> None:
        """Renew the lease while the job moves; once it stood still for the progress window,
        end it failed (freeing its slot) and stop its thread at its next batch."""
        window = self.progress_timeout_s
        period = min(self.store.job_lease_s / 3, window / 4)
        seen, moved_at = tracker.moves, time.monotonic()
        while tracker.stopped is None:
            await asyncio.sleep(period)
            if tracker.moves != seen:
                seen, moved_at = tracker.moves, time.monotonic()
            if time.monotonic() - moved_at > window:
                reason = (
                    f"no progress for {window:g} s: neither its done counter nor a forward "
                    "moved (TORCHGATE_JOB_PROGRESS_TIMEOUT_S); its model's slot is free, "
                    "start it again."
                )
                job = tracker.job
                logger.error("%s job %s for %s: %s", job.kind, job.id, job.model, reason)
                tracker.stop(reason)
                await self._write_final(functools.partial(end, reason))
                return
            try:
                if not await asyncio.to_thread(write):
                    tracker.stop("the job was ended elsewhere (cancelled, or its lease ran out)")
            except StoreUnavailable:
                continue

    async def _write_final(self, write: Callable[[], bool]) -> None:
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
        self._threads.shutdown(wait=False, cancel_futures=True)
