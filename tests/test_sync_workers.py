"""``serve --workers 2`` sharing a SQLite store into which the test writes damaged entries (a
record, a process entry, a job): both workers read past them, the next change reaches both,
the damage is reported, and a job cancelled through one worker is cancelled for both."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from app.serving.store.sqlite_store import SqliteStore
from tests.helpers.apps import ADMIN_TOKEN, admin_headers
from tests.helpers.servers import serve_process
from tests.helpers.store_damage import Damage
from tests.helpers.workers import fresh_client, reinitialize_everywhere, wait_for_all_workers

WORKERS = 2


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The server's address and its store's URL, once every worker is live."""
    folder = tmp_path_factory.mktemp("sync-workers")
    state_url = f"sqlite:///{folder}/state.sqlite3"
    env = {
        "TORCHGATE_MODELS": "cnn",
        "TORCHGATE_WORKERS": str(WORKERS),
        "TORCHGATE_STATE_URL": state_url,
        "TORCHGATE_ADMIN_TOKEN": ADMIN_TOKEN,
        "TORCHGATE_DEVICE": "cpu",
        "TORCHGATE_TORCH_THREADS": "1",
        "TORCHGATE_HEARTBEAT_S": "0.3",
        "TORCHGATE_PROCESS_TIMEOUT_S": "2",
        "TORCHGATE_JOB_LEASE_S": "2",
        "TORCHGATE_ADMIN_WAIT_S": "10",
        "TORCHGATE_ACCESS_LOG": "false",
    }
    with serve_process(env, folder / "server.log") as (port, _):
        base = f"http://127.0.0.1:{port}"
        wait_for_all_workers(base, WORKERS)
        yield base, state_url


def _until(call: Callable[[], httpx.Response], timeout: float = 15) -> httpx.Response:
    """Repeat ``call`` (a fresh request each time) until it answers 2xx."""
    deadline = time.monotonic() + timeout
    while True:
        answer = call()
        if answer.is_success or time.monotonic() > deadline:
            return answer
        time.sleep(0.1)


def test_damaged_entries_do_not_stop_the_workers(server: tuple[str, str]) -> None:
    base, state_url = server
    store = SqliteStore(state_url, process_timeout_s=2, job_lease_s=2)
    damage = Damage(store)
    try:
        bad = damage.record("cnn")
        damage.process("ghost:1")
        damage.job("broken", "evaluate", "cnn")
    finally:
        damage.close()
        store.close()

    with fresh_client(base) as client:
        body = reinitialize_everywhere(client, WORKERS)  # converged, both, one checksum
        assert body["parameters_version"] == bad + 1
        [failed] = [f for f in body["failed_records"] if f["version"] == bad]
        assert failed["op"] == "reinitialize"
        assert failed["error"].startswith("the stored record cannot be read")
        assert any("ghost:1" in entry["key"] for entry in body["skipped_entries"])
        for _ in range(12):  # whichever worker answers
            info = client.get("/v1/models/cnn").json()
            assert info["parameters_sha256"] == body["parameters_sha256"]
            assert bad in {f["version"] for f in info["failed_records"]}
            assert client.get("/healthz").status_code == 200

        broken = client.get("/admin/jobs/broken", headers=admin_headers()).json()
        assert broken["status"] == "failed" and "cannot be read" in broken["error"]
        started = _until(lambda: client.post("/admin/models/cnn/evaluate", headers=admin_headers()))
        assert started.status_code == 202, started.text  # the damaged job's slot was freed
        job_id = started.json()["job_id"]
        cancelled = client.delete(f"/admin/jobs/{job_id}", headers=admin_headers())
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        again = client.post("/admin/models/cnn/evaluate", headers=admin_headers())
        assert again.status_code == 202  # free at once, whichever worker took it
        for _ in range(8):
            seen = client.get(f"/admin/jobs/{job_id}", headers=admin_headers()).json()
            assert seen["status"] == "cancelled"
        client.delete(f"/admin/jobs/{again.json()['job_id']}", headers=admin_headers())
