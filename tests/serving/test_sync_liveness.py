"""A sync loop that dies, wedges or keeps failing: liveness fails within TORCHGATE_SYNC_STALL_S
(so the orchestrator restarts the process) and the process leaves the live set (so admin
calls stop waiting for it)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from app.config import Settings
from app.serving.store.sqlite_store import SqliteStore
from tests.helpers.apps import running_app

pytestmark = pytest.mark.anyio
STALL_S = 1.0


@pytest.fixture
def state_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/state.sqlite3"


@pytest.fixture
def peers(state_url: str) -> Iterator[SqliteStore]:
    """The store as another process of the service sees it."""
    store = SqliteStore(state_url, process_timeout_s=1.0, job_lease_s=10)
    yield store
    store.close()


@pytest.fixture
def settings(settings_factory: Callable[..., Settings], state_url: str) -> Settings:
    return settings_factory(
        models=("cnn",),
        state_url=state_url,
        heartbeat_s=0.2,
        process_timeout_s=1.0,
        sync_stall_s=STALL_S,
    )


async def _until_not_live(client: httpx.AsyncClient, timeout: float = 10) -> float:
    """Seconds until /healthz says 503."""
    started = time.monotonic()
    while (await client.get("/healthz")).status_code == 200:
        assert time.monotonic() - started < timeout, "liveness never failed"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def _until_gone(peers: SqliteStore, process_id: str, timeout: float = 10) -> float:
    started = time.monotonic()
    while process_id in {p.process_id for p in peers.live_processes()}:
        assert time.monotonic() - started < timeout, "the process stayed in the live set"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def _assert_not_live(client: httpx.AsyncClient, why: str) -> None:
    live = await client.get("/healthz")
    assert live.status_code == 503
    assert live.json()["status"] == "failed" and why in live.json()["detail"]
    v2 = await client.get("/v2/health/live")
    assert v2.status_code == 503 and v2.json() == {"live": False}
    assert (await client.get("/readyz")).status_code == 200  # it still serves meanwhile


async def test_a_killed_sync_task_fails_liveness_at_once_and_leaves_the_live_set(
    settings: Settings, peers: SqliteStore
) -> None:
    async with running_app(settings) as client:
        process_id = client.app_state.sync.process_id  # type: ignore[attr-defined]
        assert process_id in {p.process_id for p in peers.live_processes()}
        sync = client.app_state.sync  # type: ignore[attr-defined]
        # this app's task: an earlier test's app may still be finishing on a shared loop
        [task] = [
            t
            for t in asyncio.all_tasks()
            if t.get_name() == "control-store-sync"
            and getattr(t.get_coro(), "cr_frame", None) is not None
            and t.get_coro().cr_frame.f_locals.get("self") is sync  # type: ignore[union-attr]
        ]
        task.cancel()
        took = await _until_not_live(client)
        await _assert_not_live(client, "sync task ended")
        gone = await _until_gone(peers, process_id)
    assert took < 0.5
    assert gone < 1.0 + 1.5  # its heartbeats stopped: out after TORCHGATE_PROCESS_TIMEOUT_S


async def test_a_wedged_sync_loop_fails_liveness_within_the_stall_setting(
    settings: Settings, peers: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    async with running_app(settings) as client:
        store = client.app_state.sync.store  # type: ignore[attr-defined]
        process_id = client.app_state.sync.process_id  # type: ignore[attr-defined]
        monkeypatch.setattr(store, "expire_jobs", lambda: release.wait(60) and [])
        try:
            wedged_at = time.monotonic()
            took = await _until_not_live(client)
            await _assert_not_live(client, "completed no tick for")
            await _until_gone(peers, process_id)
            left_after = time.monotonic() - wedged_at
        finally:
            release.set()
    # counted from the last completed round, up to one heartbeat (0.2 s) before it wedged
    assert STALL_S - 0.2 <= took < STALL_S + 1.5
    assert left_after < 1.0 + 1.5  # no heartbeat since it wedged


async def test_a_failing_sync_loop_leaves_the_live_set_then_comes_back_when_it_recovers(
    settings: Settings, peers: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = True
    async with running_app(settings.model_copy(update={"process_timeout_s": 10.0})) as client:
        sync = client.app_state.sync  # type: ignore[attr-defined]
        real = sync.store.expire_jobs

        def expire_jobs() -> list:
            if broken:
                raise RuntimeError("a bug in the tick")
            return real()

        monkeypatch.setattr(sync.store, "expire_jobs", expire_jobs)
        # the stall is counted from the last completed tick, which may be a busy tick ago
        since_progress = time.monotonic() - sync._progress_at
        took = await _until_not_live(client) + since_progress
        await _assert_not_live(client, "last error: RuntimeError: a bug in the tick")
        gone = await _until_gone(peers, sync.process_id)  # it left: no 10 s timeout waited
        broken = False
        deadline = time.monotonic() + 5
        while (await client.get("/healthz")).status_code != 200:
            assert time.monotonic() < deadline, "liveness never came back"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        back = sync.process_id in {p.process_id for p in peers.live_processes()}
    assert STALL_S - 0.05 <= took < STALL_S + 1.5
    assert gone < 2.0  # not the 10 s process timeout
    assert back


async def test_an_event_loop_held_up_is_not_a_stall_of_the_sync_loop(settings: Settings) -> None:
    """Time the event loop did not give the sync task (blocked, starved of the GIL while models
    load, or paused between tests) does not count: liveness stays 200 once it runs again."""
    async with running_app(settings) as client:
        time.sleep(3 * STALL_S)  # the whole event loop held up, the sync loop asleep in it
        assert (await client.get("/healthz")).status_code == 200
        await asyncio.sleep(2 * 0.2)  # its next rounds complete
        assert (await client.get("/healthz")).status_code == 200


async def test_an_event_loop_held_up_mid_tick_is_not_a_stall_either(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop held up while a tick waits on the store in a thread (the tick's answer is
    there, the loop has not taken it): liveness stays 200, as when the sync loop sleeps."""
    in_tick = threading.Event()
    async with running_app(settings) as client:
        store = client.app_state.sync.store  # type: ignore[attr-defined]
        expire = store.expire_jobs

        def slow_expire():  # type: ignore[no-untyped-def]
            in_tick.set()
            time.sleep(0.05)
            return expire()

        monkeypatch.setattr(store, "expire_jobs", slow_expire)
        while not in_tick.is_set():  # the next round's tick is in its thread now
            await asyncio.sleep(0.01)
        time.sleep(3 * STALL_S)  # the whole event loop held up, the tick's answer waiting
        assert (await client.get("/healthz")).status_code == 200
        await asyncio.sleep(2 * 0.2)  # its next rounds complete
        assert (await client.get("/healthz")).status_code == 200
