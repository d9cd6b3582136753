"""Damaged entries in the control store (SQLite file, real Redis) never stop the sync: two
apps of one service, in this process, share the store; the test writes what the service never
would straight into it, and the next admin change still reaches both."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest

from app.config import Settings
from app.serving import sync as sync_module
from tests.helpers.apps import admin_headers, running_app
from tests.helpers.redis_server import RedisServer
from tests.helpers.store_damage import Damage

pytestmark = pytest.mark.anyio
REINIT = "/admin/models/cnn/reinitialize"


@pytest.fixture(params=["sqlite", "redis"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        return server.url
    return f"sqlite:///{tmp_path}/state.sqlite3"


@pytest.fixture
async def pair(
    settings_factory: Callable[..., Settings], state_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[list[httpx.AsyncClient]]:
    """Two apps (processes ``a:1`` and ``b:1``) serving cnn from one store."""
    ids = itertools.chain(["a:1", "b:1"], (f"x:{n}" for n in itertools.count()))
    monkeypatch.setattr(sync_module, "default_process_id", lambda: next(ids))
    settings = settings_factory(
        models=("cnn",),
        state_url=state_url,
        heartbeat_s=0.2,
        process_timeout_s=2.0,
        job_lease_s=1.0,
        admin_wait_s=10.0,
    )
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(running_app(settings)) for _ in range(2)]


async def _both_live(client: httpx.AsyncClient) -> None:
    """Until one admin change lists both apps (each has caught up and heartbeat ready)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        answer = await client.post("/admin/models/cnn/reload", headers=admin_headers())
        if answer.status_code == 200 and len(answer.json()["processes"]) == 2:
            return
    raise AssertionError("the second app never became live")


async def test_damaged_entries_are_reported_and_the_next_change_reaches_every_process(
    pair: list[httpx.AsyncClient],
) -> None:
    a, b = pair
    await _both_live(a)
    damage = Damage(a.app_state.sync.store)  # type: ignore[attr-defined]
    try:
        unreadable = damage.record("cnn")
        unknown = damage.record("cnn", op="explode", args="{}")
        bad_args = damage.record("cnn", args='{"scheme": "normal", "std": -1, "seed": 1}')
        damage.process("ghost:1")
        damage.report("cnn", "ghost:1")
        damage.job("broken", "evaluate", "cnn")
        answer = await b.post(REINIT, json={"scheme": "normal", "seed": 7}, headers=admin_headers())
    finally:
        damage.close()

    assert answer.status_code == 200
    body = answer.json()
    assert body["converged"] is True
    assert body["parameters_version"] == bad_args + 1
    assert [p["process_id"] for p in body["processes"]] == ["a:1", "b:1"]
    assert {p["parameters_sha256"] for p in body["processes"]} == {body["parameters_sha256"]}
    assert all(p["ok"] and p["parameters_version"] == bad_args + 1 for p in body["processes"])
    failed = {f["version"]: f for f in body["failed_records"]}
    assert set(failed) == {unreadable, unknown, bad_args}
    assert failed[unreadable]["error"].startswith("the stored record cannot be read")
    assert failed[unknown]["op"] == "explode" and "unknown operation" in failed[unknown]["error"]
    assert "std must be greater than 0" in failed[bad_args]["error"]
    assert any("ghost:1" in entry["key"] for entry in body["skipped_entries"])

    for client in (a, b):  # every process applied it, and says which records failed
        info = (await client.get("/v1/models/cnn")).json()
        assert info["parameters_sha256"] == body["parameters_sha256"]
        assert {f["version"] for f in info["failed_records"]} == set(failed)
        assert (await client.get("/healthz")).status_code == 200

    job = (await a.get("/admin/jobs/broken", headers=admin_headers())).json()
    assert job["status"] == "failed" and "cannot be read" in job["error"]
    deadline = time.monotonic() + 2  # its lease ran out: ended at the next heartbeat round
    while (
        started := await b.post("/admin/models/cnn/evaluate", headers=admin_headers())
    ).status_code == 409:
        assert time.monotonic() < deadline, started.text
        await asyncio.sleep(0.05)
    assert started.status_code == 202  # the damaged job's slot was freed
    cancelled = await a.delete(f"/admin/jobs/{started.json()['job_id']}", headers=admin_headers())
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
