"""Admin jobs over HTTP: DELETE /admin/jobs/{id} cancels (slot free at once, the worker stops
at its next batch), and a wedged evaluation ends failed instead of holding its slot."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.serving.runtime import ModelRuntime
from tests.helpers.apps import admin_headers, running_app

pytestmark = pytest.mark.anyio
EVALUATE = "/admin/models/cnn/evaluate"


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Settings:
    return settings_factory(
        models=("cnn",), heartbeat_s=0.2, job_lease_s=1.0, job_progress_timeout_s=1.0
    )


async def _job(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    answer = await client.get(f"/admin/jobs/{job_id}", headers=admin_headers())
    assert answer.status_code == 200
    return answer.json()


async def _until_ended(client: httpx.AsyncClient, job_id: str, timeout: float = 15) -> float:
    started = time.monotonic()
    while (await _job(client, job_id))["status"] in ("queued", "running"):
        assert time.monotonic() - started < timeout, "the job never ended"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def test_cancelling_a_job_frees_its_slot_and_stops_its_worker(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    forwards: list[float] = []
    real = ModelRuntime.forward_blocking

    def slow_forward(self: ModelRuntime, *inputs: Any, **kwargs: Any) -> Any:
        time.sleep(0.2)  # ten batches: two seconds, long enough to cancel mid-way
        forwards.append(time.monotonic())
        return real(self, *inputs, **kwargs)

    monkeypatch.setattr(ModelRuntime, "forward_blocking", slow_forward)
    async with running_app(settings) as client:
        unauthorized = await client.delete("/admin/jobs/x")
        assert unauthorized.status_code == 401
        missing = await client.delete("/admin/jobs/no-such-job", headers=admin_headers())
        assert missing.status_code == 404 and "no-such-job" in missing.json()["detail"]

        first = (await client.post(EVALUATE, headers=admin_headers())).json()["job_id"]
        while not forwards:
            await asyncio.sleep(0.02)
        busy = await client.post(EVALUATE, headers=admin_headers())
        assert busy.status_code == 409 and f"DELETE /admin/jobs/{first}" in busy.json()["detail"]

        cancelled = await client.delete(f"/admin/jobs/{first}", headers=admin_headers())
        assert cancelled.status_code == 200
        body = cancelled.json()
        assert body["status"] == "cancelled" and "cancelled by an admin" in body["error"]
        cancelled_at = time.monotonic()
        second = await client.post(EVALUATE, headers=admin_headers())
        assert second.status_code == 202  # the slot is free at once
        assert (await _job(client, first))["status"] == "cancelled"
        await client.delete(f"/admin/jobs/{second.json()['job_id']}", headers=admin_headers())
        await asyncio.sleep(0.6)
        late = [t for t in forwards if t > cancelled_at + 0.25]
        assert len(late) <= 1  # at most the forward in flight, then it stopped
        again = await client.delete(f"/admin/jobs/{first}", headers=admin_headers())
        assert again.status_code == 200 and again.json()["status"] == "cancelled"


async def test_a_wedged_evaluation_ends_failed_and_frees_its_slot(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A forward that never returns (and a wait without a timeout): no progress for the
    window, so the job ends failed with that reason."""
    release = threading.Event()

    def wedged(self: ModelRuntime, *inputs: Any, **kwargs: Any) -> Any:
        release.wait(60)
        raise RuntimeError("released at the end of the test")

    monkeypatch.setattr(ModelRuntime, "forward_blocking", wedged)
    async with running_app(settings) as client:
        try:
            job_id = (await client.post(EVALUATE, headers=admin_headers())).json()["job_id"]
            took = await _until_ended(client, job_id)
            job = await _job(client, job_id)
            assert job["status"] == "failed"
            assert job["error"].startswith("no progress for 1 s")
            assert 0.8 <= took < 3.0  # the window (1 s), from the job's start
            again = await client.post(EVALUATE, headers=admin_headers())
            assert again.status_code == 202  # its slot is free
            finished = await client.delete(f"/admin/jobs/{job_id}", headers=admin_headers())
            assert finished.status_code == 409 and "already failed" in finished.json()["detail"]
        finally:
            release.set()


async def test_a_forward_that_does_not_return_in_time_fails_the_job(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    async with running_app(
        settings.model_copy(update={"job_forward_timeout_s": 0.5, "job_progress_timeout_s": 30})
    ) as client:
        runtime = client.app_state.registry.runtime("cnn")  # type: ignore[attr-defined]
        real = runtime.forward.run

        def stuck(*args: Any, **kwargs: Any) -> Any:
            release.wait(60)  # the device worker itself is stuck
            return real(*args, **kwargs)

        monkeypatch.setattr(runtime.forward, "run", stuck)
        try:
            job_id = (await client.post(EVALUATE, headers=admin_headers())).json()["job_id"]
            took = await _until_ended(client, job_id)
            job = await _job(client, job_id)
        finally:
            release.set()
    assert job["status"] == "failed"
    assert "did not return within 0.5 s (TORCHGATE_JOB_FORWARD_TIMEOUT_S)" in job["error"]
    assert took < 5
