"""One service, many processes: ``serve --workers 3`` with the embedded (SQLite) store.
(One /metrics for all workers is tested in test_metrics_multiprocess.py.)

Every request opens a fresh connection, so the kernel spreads them over the workers; the
``X-Torchgate-Process`` header of admin answers says which worker answered. Every worker also
binds the one gRPC port (SO_REUSEPORT): fresh gRPC connections spread the same way.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2, service_pb2_grpc

from tests.helpers.apps import ADMIN_TOKEN, admin_headers
from tests.helpers.images import garment_png
from tests.helpers.servers import free_port, serve_process
from tests.helpers.workers import fresh_client, reinitialize_everywhere

pytestmark = pytest.mark.integration

WORKERS = 3
PNG = garment_png()


@pytest.fixture(scope="module")
def grpc_port() -> int:
    """The one gRPC port every worker binds (SO_REUSEPORT)."""
    return free_port()


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory, grpc_port: int) -> Iterator[tuple[str, str]]:
    """The server's address, and the cnn checksum of its weights' source."""
    folder = tmp_path_factory.mktemp("workers")
    env = {
        "TORCHGATE_MODELS": "cnn,lstm",
        "TORCHGATE_WORKERS": str(WORKERS),
        "TORCHGATE_ADMIN_TOKEN": ADMIN_TOKEN,
        "TORCHGATE_DEVICE": "cpu",
        "TORCHGATE_TORCH_THREADS": "1",
        "TORCHGATE_HEARTBEAT_S": "0.5",
        "TORCHGATE_PROCESS_TIMEOUT_S": "3",
        "TORCHGATE_GRPC_PORT": str(grpc_port),
    }
    with serve_process(env, folder / "server.log") as (port, _):
        base = f"http://127.0.0.1:{port}"
        yield base, _wait_for_all_workers(base)


def _wait_for_all_workers(base: str) -> str:
    """Until a reload lists every worker (each one loaded and caught up); its checksum."""
    deadline = time.monotonic() + 120
    with fresh_client(base) as client:
        while time.monotonic() < deadline:
            answer = client.post("/admin/models/cnn/reload", headers=admin_headers())
            if answer.status_code == 200 and len(answer.json()["processes"]) == WORKERS:
                return str(answer.json()["parameters_sha256"])
            time.sleep(0.5)
    raise AssertionError("not every worker became ready")


def _check_every_answer(base: str, version: int, sha256: str, grpc_port: int) -> None:
    with fresh_client(base) as client:
        for _ in range(300):
            answer = client.post(
                "/v1/models/cnn/predict", content=PNG, headers={"content-type": "image/png"}
            )
            assert answer.status_code == 200
            assert answer.headers["X-Model-Version"] == str(version)
            assert answer.headers["X-Model-Parameters-SHA256"] == sha256
        for _ in range(30):
            info = client.get("/v1/models/cnn").json()
            assert (info["parameters_version"], info["parameters_sha256"]) == (version, sha256)
    request = service_pb2.ModelInferRequest(model_name="cnn")
    request.inputs.add(name="input", datatype="FP32", shape=[1, 1, 28, 28])
    request.raw_input_contents.append(np.zeros(784, "<f4").tobytes())
    for _ in range(30):  # a channel of its own each: a fresh connection, wherever it lands
        options = [("grpc.use_local_subchannel_pool", 1)]
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}", options=options) as channel:
            reply = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request)
        parameters = reply.parameters
        assert parameters["parameters_version"].int64_param == version
        assert parameters["parameters_sha256"].string_param == sha256


def test_a_seeded_reinitialize_reaches_every_worker(
    workers: tuple[str, str], grpc_port: int
) -> None:
    base = workers[0]
    with fresh_client(base) as client:
        body = reinitialize_everywhere(client, WORKERS)
    assert {p["parameters_version"] for p in body["processes"]} == {body["parameters_version"]}
    _check_every_answer(base, body["parameters_version"], body["parameters_sha256"], grpc_port)

    with fresh_client(base) as client:
        again = client.post(
            "/admin/models/cnn/reinitialize",
            json={"scheme": "normal", "std": 0.5, "seed": 1},
            headers=admin_headers(),
        ).json()
    assert again["parameters_version"] > body["parameters_version"]
    assert again["parameters_sha256"] == body["parameters_sha256"]  # same seed, same bytes


def test_a_reload_reaches_every_worker(workers: tuple[str, str], grpc_port: int) -> None:
    base, source_sha256 = workers
    with fresh_client(base) as client:
        client.post("/admin/models/cnn/reinitialize", json={"seed": 4}, headers=admin_headers())
        answer = client.post("/admin/models/cnn/reload", headers=admin_headers())
    assert answer.status_code == 200
    body = answer.json()
    assert body["converged"] is True and len(body["processes"]) == WORKERS
    assert body["parameters_sha256"] == source_sha256
    _check_every_answer(base, body["parameters_version"], body["parameters_sha256"], grpc_port)


def test_a_job_started_on_one_worker_answers_from_every_worker(
    workers: tuple[str, str],
) -> None:
    base = workers[0]
    with fresh_client(base) as client:
        started = client.post("/admin/models/lstm/evaluate", headers=admin_headers())
        assert started.status_code == 202
        job_id = started.json()["job_id"]
        answered_by: set[str] = set()
        seen_progress = False
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            answer = client.get(f"/admin/jobs/{job_id}", headers=admin_headers())
            assert answer.status_code == 200, answer.text
            job = answer.json()
            answered_by.add(answer.headers["X-Torchgate-Process"])
            seen_progress |= 0 < job["progress"]["done"] < job["progress"]["total"]
            if job["status"] == "succeeded" and len(answered_by) == WORKERS:
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"job {job} answered by {answered_by}")
        assert job["owner"] in answered_by
        assert job["result"]["accuracy"] > 0.85
        accuracies = set()
        for _ in range(12):
            answer = client.get("/admin/models/lstm/accuracy", headers=admin_headers())
            accuracies.add(answer.json()["latest"]["accuracy"])
        assert accuracies == {job["result"]["accuracy"]}
    assert seen_progress
