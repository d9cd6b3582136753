"""Three ``serve`` processes sharing a real Redis, behind a real haproxy (round-robin).

They must answer as one service: admin changes reach every replica before the call returns,
a replica that was down catches up before it says ready, an outage of the store stops only
the admin writes, and a job whose process dies ends failed with a reason.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.helpers.apps import ADMIN_TOKEN, admin_headers
from tests.helpers.images import garment_png
from tests.helpers.redis_server import RedisServer
from tests.helpers.servers import haproxy, serve_process, serve_processes

pytestmark = pytest.mark.integration

PNG = garment_png()
PREDICT = {"content": PNG, "headers": {"content-type": "image/png"}}


@dataclass
class Replicas:
    redis: RedisServer
    ports: list[int]
    processes: list
    balancer: str
    env: dict[str, str]
    folder: Path
    stack: ExitStack

    def url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.ports[index]}"


def _env(redis: RedisServer) -> dict[str, str]:
    return {
        "TORCHGATE_MODELS": "cnn,lstm",
        "TORCHGATE_STATE_URL": redis.url,
        "TORCHGATE_ADMIN_TOKEN": ADMIN_TOKEN,
        "TORCHGATE_DEVICE": "cpu",
        "TORCHGATE_TORCH_THREADS": "1",
        "TORCHGATE_HEARTBEAT_S": "0.5",
        "TORCHGATE_PROCESS_TIMEOUT_S": "2",
        "TORCHGATE_JOB_LEASE_S": "2",
        "TORCHGATE_ADMIN_WAIT_S": "10",
        "TORCHGATE_ACCESS_LOG": "false",
    }


@contextmanager
def _running_replicas(redis: RedisServer, folder: Path) -> Iterator[Replicas]:
    env = _env(redis)
    with ExitStack() as stack:
        logs = [folder / f"replica{i}.log" for i in range(3)]
        started = stack.enter_context(serve_processes(env, logs))
        ports = [port for port, _ in started]
        balancer = stack.enter_context(haproxy(ports, folder))
        yield Replicas(
            redis,
            ports,
            [process for _, process in started],
            f"http://127.0.0.1:{balancer}",
            env,
            folder,
            stack,
        )


@pytest.fixture
def replicas(redis_server: RedisServer, tmp_path: Path) -> Iterator[Replicas]:
    """Three replicas of their own, for a test that kills one."""
    with _running_replicas(redis_server, tmp_path) as running:
        yield running


@pytest.fixture(scope="module")
def lasting_replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    """Three replicas shared by the tests that leave them as they found them: all three up,
    the store up (the module's last tests, so that they stop right after)."""
    folder = tmp_path_factory.mktemp("replicas")
    redis = RedisServer(folder)
    redis.start()
    try:
        with _running_replicas(redis, folder) as running:
            yield running
    finally:
        redis.stop()


def _change(client: httpx.Client, index: int) -> httpx.Response:
    if index % 2:
        return client.post("/admin/models/cnn/reload", headers=admin_headers())
    return client.post(
        "/admin/models/cnn/reinitialize", json={"seed": index}, headers=admin_headers()
    )


def _poll_until_ready(client: httpx.Client) -> bool:
    """Poll /readyz until 200; whether a 503 was seen on the way."""
    seen_not_ready = False
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            status = client.get("/readyz").status_code
        except httpx.TransportError:
            time.sleep(0.02)
            continue
        if status == 200:
            return seen_not_ready
        seen_not_ready = True
        time.sleep(0.01)
    raise AssertionError("the restarted replica never became ready")


def test_a_replica_that_was_down_catches_up_before_it_is_ready(replicas: Replicas) -> None:
    victim = replicas.processes[2]
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(10)
    with httpx.Client(base_url=replicas.url(0), timeout=60) as client:
        changed = client.post(
            "/admin/models/cnn/reinitialize",
            json={"scheme": "uniform", "a": -0.1, "b": 0.1, "seed": 99},
            headers=admin_headers(),
        ).json()
    assert changed["converged"] is True
    assert len(changed["processes"]) == 2  # the dead one dropped out of the live set

    log = replicas.folder / "restart.log"
    with (
        serve_process(replicas.env, log, replicas.ports[2], wait_ready=False),
        httpx.Client(base_url=replicas.url(2), timeout=10) as client,
    ):
        seen_not_ready = _poll_until_ready(client)
        # the very first moment it says ready, it must already serve the current parameters
        info = client.get("/v1/models/cnn").json()
        answer = client.post("/v1/models/cnn/predict", **PREDICT)
    assert seen_not_ready
    assert info["parameters_version"] == changed["parameters_version"]
    assert info["parameters_sha256"] == changed["parameters_sha256"]
    assert answer.headers["X-Model-Version"] == str(changed["parameters_version"])


def test_a_job_whose_process_dies_ends_failed_with_a_reason(replicas: Replicas) -> None:
    with httpx.Client(base_url=replicas.url(1), timeout=30) as owner:
        job_id = owner.post("/admin/models/lstm/evaluate", headers=admin_headers()).json()["job_id"]
        deadline = time.monotonic() + 60
        while (
            owner.get(f"/admin/jobs/{job_id}", headers=admin_headers()).json()["progress"]["done"]
            == 0
        ):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    os.kill(replicas.processes[1].pid, signal.SIGKILL)
    with httpx.Client(base_url=replicas.url(0), timeout=30) as other:
        deadline = time.monotonic() + 30
        while True:
            job = other.get(f"/admin/jobs/{job_id}", headers=admin_headers()).json()
            if job["status"] != "running" or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    assert job["status"] == "failed"
    assert "lease" in job["error"] and job["owner"] in job["error"]
    assert 0 < job["progress"]["done"] < job["progress"]["total"]


# -- on the module's lasting replicas (last, so that they stop right after) -----------------


@pytest.mark.soak
def test_admin_changes_under_load_never_go_back_in_time(lasting_replicas: Replicas) -> None:
    """16 clients predict through the balancer while 50 changes go through it too: no
    request fails, and no request sent after a change answered carries an older version."""
    stop = threading.Event()
    answers: list[tuple[float, int]] = []  # (sent at, version that answered)
    failures: list[str] = []

    def client_loop() -> None:
        with httpx.Client(base_url=lasting_replicas.balancer, timeout=30) as client:
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    answer = client.post("/v1/models/cnn/predict", **PREDICT)
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    continue
                if answer.status_code != 200:
                    failures.append(f"{answer.status_code} {answer.text}")
                    continue
                answers.append((sent, int(answer.headers["X-Model-Version"])))

    threads = [threading.Thread(target=client_loop) for _ in range(16)]
    for thread in threads:
        thread.start()
    changes: list[tuple[float, int]] = []  # (answered at, version)
    try:
        with httpx.Client(base_url=lasting_replicas.balancer, timeout=60) as admin:
            for index in range(50):
                answer = _change(admin, index)
                assert answer.status_code == 200, answer.text
                body = answer.json()
                assert body["converged"] is True, body
                assert len(body["processes"]) == 3
                changes.append((time.monotonic(), body["parameters_version"]))
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert not failures, failures[:5]
    versions = [version for _, version in changes]
    assert versions == sorted(versions) and len(set(versions)) == 50
    late = [
        (sent, version, floor)
        for answered_at, floor in changes
        for sent, version in answers
        if sent > answered_at and version < floor
    ]
    assert not late, late[:5]
    assert len(answers) > 200


def test_inference_outlives_the_store_and_admin_recovers_without_restarts(
    lasting_replicas: Replicas,
) -> None:
    with httpx.Client(base_url=lasting_replicas.balancer, timeout=30) as client:
        before = _change(client, 0).json()["parameters_version"]
        lasting_replicas.redis.stop()
        for _ in range(30):
            assert client.post("/v1/models/cnn/predict", **PREDICT).status_code == 200
        refused = _change(client, 2)
        assert refused.status_code == 503
        assert lasting_replicas.redis.url.split("/0")[0] in refused.json()["detail"]
        assert client.get("/admin/jobs/0123", headers=admin_headers()).status_code == 503
        lasting_replicas.redis.start()
        deadline = time.monotonic() + 30
        while True:
            answer = _change(client, 4)
            if answer.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert answer.status_code == 200, answer.text
        assert answer.json()["parameters_version"] > before
        deadline = time.monotonic() + 30
        while len(_change(client, 6).json()["processes"]) < 3:
            assert time.monotonic() < deadline, "not every replica came back to the store"
            time.sleep(0.3)
        final = _change(client, 8).json()
        assert final["converged"] is True and len(final["processes"]) == 3
        for _ in range(9):
            info = client.get("/v1/models/cnn").json()
            assert info["parameters_version"] == final["parameters_version"]
