"""Jobs under their lease, on a real SQLite store shared by two processes (two Jobs): renewed
only while they progress, ended failed when they stand still, cancelled from either process,
and in every case their thread stops at its next batch and their slot is free."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.errors import Conflict, NotFound
from app.serving.jobs import Jobs, JobStopped, Progress
from app.serving.store import JobRecord
from app.serving.store.sqlite_store import SqliteStore

pytestmark = pytest.mark.anyio
WINDOW_S = 0.6


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[list[SqliteStore]]:
    url = f"sqlite:///{tmp_path}/state.sqlite3"
    opened = [SqliteStore(url, process_timeout_s=5, job_lease_s=0.6) for _ in range(2)]
    yield opened
    for store in opened:
        store.close()


class Steps:
    """A job body of ``steps`` batches, one every ``pace`` seconds; it can be wedged, and it
    remembers how it ended."""

    def __init__(self, steps: int = 1000, pace: float = 0.05, beat_only: bool = False) -> None:
        self.steps, self.pace, self.beat_only = steps, pace, beat_only
        self.wedge = threading.Event()
        self.release = threading.Event()
        self.batches = 0
        self.stopped: str | None = None
        self.ended = threading.Event()

    def __call__(self, progress: Progress) -> dict[str, Any]:
        try:
            for step in range(self.steps):
                if self.wedge.is_set():
                    self.release.wait(30)  # a forward that does not come back
                time.sleep(self.pace)
                self.batches += 1
                progress.beat() if self.beat_only else progress(step + 1, self.steps)
            return {"batches": self.batches}
        except JobStopped as exc:
            self.stopped = exc.detail
            raise
        finally:
            self.ended.set()


async def _until(condition: Any, timeout: float = 10) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout
        await asyncio.sleep(0.02)
    return time.monotonic() - started


def _status(store: SqliteStore, job: JobRecord) -> str:
    stored = store.get_job(job.id)
    assert stored is not None
    return stored.status


async def test_a_job_that_progresses_keeps_its_lease_past_the_window(
    stores: list[SqliteStore],
) -> None:
    jobs = Jobs(stores[0], "p1", progress_timeout_s=WINDOW_S)
    for body in (Steps(steps=30), Steps(steps=30, beat_only=True)):  # 1.5 s each
        job = await jobs.submit("evaluate", "cnn", body)
        await _until(lambda job=job: _status(stores[1], job) not in ("queued", "running"))
        assert _status(stores[1], job) == "succeeded"
        assert stores[1].expire_jobs() == []
    await jobs.close()


async def test_a_job_that_stands_still_ends_failed_and_frees_its_slot(
    stores: list[SqliteStore],
) -> None:
    owner, other = Jobs(stores[0], "p1", WINDOW_S), Jobs(stores[1], "p2", WINDOW_S)
    body = Steps()
    job = await owner.submit("evaluate", "cnn", body)
    await _until(lambda: body.batches >= 3)
    body.wedge.set()
    took = await _until(lambda: _status(stores[1], job) == "failed")
    failed = await other.get(job.id)
    assert failed.error is not None
    assert failed.error.startswith(f"no progress for {WINDOW_S:g} s")
    # counted from its last move, which the lease keeper sees up to one period (0.15 s) late
    assert WINDOW_S - 0.2 <= took < WINDOW_S + 1.0
    await other.submit("evaluate", "cnn", Steps(steps=1))  # the slot is free at once
    body.release.set()  # the forward comes back: the thread stops at its next batch
    await _until(body.ended.is_set)
    assert body.stopped is not None and body.stopped.startswith("no progress")
    assert (await other.get(job.id)).status == "failed"
    await owner.close()
    await other.close()


@pytest.mark.parametrize("where", ["owner", "other process"])
async def test_a_cancelled_job_ends_cancelled_everywhere_and_its_thread_stops(
    stores: list[SqliteStore], where: str
) -> None:
    owner, other = Jobs(stores[0], "p1", WINDOW_S), Jobs(stores[1], "p2", WINDOW_S)
    body = Steps()
    job = await owner.submit("evaluate", "cnn", body)
    await _until(lambda: body.batches >= 2)
    cancelled = await (owner if where == "owner" else other).cancel(job.id)
    assert cancelled.status == "cancelled" and "DELETE /admin/jobs" in (cancelled.error or "")
    assert (await other.get(job.id)).status == "cancelled"
    await other.submit("evaluate", "cnn", Steps(steps=1))  # the slot is free at once
    took = await _until(body.ended.is_set)
    assert body.stopped is not None
    assert took < (0.5 if where == "owner" else 1.0)  # next batch; next write elsewhere
    await asyncio.sleep(0.3)
    assert (await owner.get(job.id)).status == "cancelled"  # nothing overwrote it
    assert (await other.cancel(job.id)) == cancelled  # again: the same answer, no change
    await owner.close()
    await other.close()


async def test_cancelling_an_unknown_or_finished_job(stores: list[SqliteStore]) -> None:
    jobs = Jobs(stores[0], "p1", WINDOW_S)
    with pytest.raises(NotFound):
        await jobs.cancel("no-such-job")
    job = await jobs.submit("evaluate", "cnn", Steps(steps=1, pace=0))
    await _until(lambda: _status(stores[0], job) == "succeeded")
    with pytest.raises(Conflict, match="has already succeeded"):
        await jobs.cancel(job.id)
    await jobs.close()
