"""ParameterSync in one process, with the other processes of the service played by the test
through the same SQLite store: what an admin call waits for, lists and reports."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.config import Settings
from app.serving.store import AppliedReport, ProcessInfo
from app.serving.store.sqlite_store import SqliteStore
from tests.helpers.apps import admin_headers, running_app
from tests.helpers.servers import free_port

pytestmark = pytest.mark.anyio
REINIT = "/admin/models/cnn/reinitialize"


@pytest.fixture
def state_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/state.sqlite3"


@pytest.fixture
def peers(state_url: str) -> Iterator[SqliteStore]:
    """The store as another process of the service sees it."""
    store = SqliteStore(state_url, process_timeout_s=5, job_lease_s=10)
    yield store
    store.close()


@pytest.fixture
def cnn_settings(settings_factory: Callable[..., Settings], state_url: str) -> Settings:
    return settings_factory(models=("cnn",), state_url=state_url, admin_wait_s=1.0)


def _ghost(store: SqliteStore, ready: bool = True) -> None:
    store.heartbeat(ProcessInfo("ghost:1", ("cnn",), ready=ready, started_at=time.time()))


async def test_one_process_converges_on_its_own(cnn_settings: Settings) -> None:
    async with running_app(cnn_settings) as client:
        answer = await client.post(REINIT, json={"seed": 3}, headers=admin_headers())
        assert answer.status_code == 200
        body = answer.json()
        assert body["converged"] is True
        [me] = body["processes"]
        assert answer.headers["X-Torchgate-Process"] == me["process_id"]
        assert me["ok"] and me["parameters_version"] == body["parameters_version"] == 2
        assert me["parameters_sha256"] == body["parameters_sha256"]
        info = (await client.get("/v1/models/cnn")).json()
        assert info["parameters_version"] == 2


async def test_a_live_process_that_does_not_apply_is_listed_and_not_converged(
    cnn_settings: Settings, peers: SqliteStore
) -> None:
    async with running_app(cnn_settings) as client:
        _ghost(peers)
        started = time.monotonic()
        answer = await client.post(REINIT, json={"seed": 3}, headers=admin_headers())
        waited = time.monotonic() - started
    body = answer.json()
    assert answer.status_code == 200
    assert body["converged"] is False
    ghost = next(p for p in body["processes"] if p["process_id"] == "ghost:1")
    assert ghost["ok"] is False and "within 1 s (TORCHGATE_ADMIN_WAIT_S)" in ghost["error"]
    assert 1.0 <= waited < 5


async def test_a_process_that_reports_an_error_is_not_hidden(
    cnn_settings: Settings, peers: SqliteStore
) -> None:
    async with running_app(cnn_settings) as client:
        _ghost(peers)
        version = peers.records_after("cnn", 0)
        assert version == []
        peers.report_applied(
            AppliedReport(
                "ghost:1",
                "cnn",
                2,
                "",
                ok=False,
                error="model 'cnn' is unavailable here: no checkpoint",
                applied_at=time.time(),
            )
        )
        answer = await client.post(REINIT, json={"seed": 3}, headers=admin_headers())
    body = answer.json()
    assert body["parameters_version"] == 2 and body["converged"] is False
    ghost = next(p for p in body["processes"] if p["process_id"] == "ghost:1")
    assert ghost["error"].startswith("model 'cnn' is unavailable here")


async def test_processes_still_starting_are_not_waited_for(
    cnn_settings: Settings, peers: SqliteStore
) -> None:
    async with running_app(cnn_settings) as client:
        _ghost(peers, ready=False)  # it will replay the record before it says ready
        answer = await client.post(REINIT, json={"seed": 3}, headers=admin_headers())
    body = answer.json()
    assert body["converged"] is True and len(body["processes"]) == 1


async def test_a_new_process_replays_the_records_before_it_is_ready(
    cnn_settings: Settings, peers: SqliteStore
) -> None:
    """Changes made while it was away (here: before it started) are applied in order, from
    the latest reload on, and reported."""
    peers.append_record("cnn", "reinitialize", {"scheme": "normal", "seed": 1}, "p:1", floor=1)
    peers.append_record("cnn", "reload", {}, "p:1", floor=2)
    plan = {"scheme": "uniform", "mean": 0.0, "std": 0.01, "a": -0.2, "b": 0.2, "seed": 5}
    peers.append_record("cnn", "reinitialize", plan, "p:1", floor=3)
    async with running_app(cnn_settings) as client:
        info = (await client.get("/v1/models/cnn")).json()
        assert info["parameters_version"] == 4
        again = await client.post(
            REINIT,
            json={"scheme": "uniform", "a": -0.2, "b": 0.2, "seed": 5},
            headers=admin_headers(),
        )
        [report] = peers.applied("cnn").values()
    assert again.json()["parameters_sha256"] == info["parameters_sha256"]  # same seed, same bytes
    assert report.version == 5 and report.ok
    assert peers.applied("cnn") == {}  # a clean stop leaves the live set and its reports


async def test_a_process_that_never_reached_its_store_does_not_serve(
    settings_factory: Callable[..., Settings],
) -> None:
    """Redis is not there at start: the process cannot know whether its parameters are
    stale, so it answers nothing with them and /readyz says why."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    settings = settings_factory(models=("cnn",), state_url=url, heartbeat_s=0.2)
    async with running_app(settings, ready=False) as client:
        deadline = time.monotonic() + 60
        while (await client.get("/v1/models/cnn")).json()["status"] != "ready":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["status"] == "syncing"
        assert url.removesuffix("/0") in ready.json()["detail"]
        refused = await client.post(REINIT, json={"seed": 1}, headers=admin_headers())
        assert refused.status_code == 409  # not caught up: not allowed to change anything
        stale = await client.post("/v1/models/cnn/predict", json={"inputs": [[[[0.0] * 28] * 28]]})
        assert stale.status_code == 409 and "replaying" in stale.json()["detail"]
