"""``serve --server granian``: a real granian process behaves like the uvicorn one.

Readiness, answers (compared with a uvicorn server's, byte for byte), admin, the gRPC port,
the access log, several workers sharing one control store and one /metrics, and a graceful
SIGTERM, all through real processes on loopback ports.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.grpc import service_pb2, service_pb2_grpc

from app.errors import ConfigurationError
from app.servers import run_granian
from tests.conftest import ADMIN_TOKEN, REPO_ROOT, admin_headers, free_port, serve_process
from tests.helpers.workers import fresh_client, reinitialize_everywhere
from torchgate_bench.images import garment_png

PNG = garment_png().data
RAW = {"content-type": "image/png"}
GRANIAN = ("--server", "granian")


def _env(grpc_port: int, **extra: str) -> dict[str, str]:
    return {
        "TORCHGATE_MODELS": "cnn",
        "TORCHGATE_ADMIN_TOKEN": ADMIN_TOKEN,
        "TORCHGATE_DEVICE": "cpu",
        "TORCHGATE_TORCH_THREADS": "1",
        "TORCHGATE_GRPC_PORT": str(grpc_port),
        **extra,
    }


def _grpc_infer(grpc_port: int) -> service_pb2.ModelInferResponse:
    """One cnn inference over a channel of its own (a fresh connection)."""
    request = service_pb2.ModelInferRequest(model_name="cnn")
    request.inputs.add(name="input", datatype="FP32", shape=[1, 1, 28, 28])
    request.raw_input_contents.append(np.zeros(784, "<f4").tobytes())
    options = [("grpc.use_local_subchannel_pool", 1)]
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}", options=options) as channel:
        return service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)


def _answers(base: str) -> tuple[dict, dict]:
    """The cnn's answer to the PNG as a raw body and as a multipart upload."""
    with httpx.Client(base_url=base, timeout=60) as client:
        raw = client.post("/v1/models/cnn/predict", content=PNG, headers=RAW, params={"top_k": 3})
        multipart = client.post(
            "/v1/models/cnn/predict", files=[("file", ("g.png", PNG, "image/png"))]
        )
    assert raw.status_code == 200, raw.text
    assert multipart.status_code == 200, multipart.text
    return raw.json(), multipart.json()


def _wait_for(condition: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError("timed out waiting for the server")


@pytest.fixture(scope="module")
def uvicorn_answers(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    """What the default server (uvicorn) answers, to hold granian's answers against."""
    folder = tmp_path_factory.mktemp("uvicorn")
    with serve_process(_env(free_port()), folder / "server.log") as (port, _):
        return _answers(f"http://127.0.0.1:{port}")


def test_granian_serves_like_uvicorn_and_stops_on_sigterm(
    uvicorn_answers: tuple[dict, dict], tmp_path: Path
) -> None:
    grpc_port = free_port()
    log = tmp_path / "server.log"
    with serve_process(_env(grpc_port), log, args=GRANIAN) as (port, process):
        base = f"http://127.0.0.1:{port}"
        ready = httpx.get(f"{base}/readyz", timeout=30)
        assert ready.status_code == 200
        assert ready.headers["server"] == "granian"
        assert ready.json()["models"] == {"cnn": "ready"}
        assert _answers(base) == uvicorn_answers
        with httpx.Client(base_url=base, timeout=60) as client:
            traced = client.get("/v1/models/cnn", headers={"X-Request-ID": "granian-trace-1"})
            assert traced.status_code == 200
            assert traced.headers["X-Request-ID"] == "granian-trace-1"
            # files go out through granian's http.response.pathsend extension
            script = client.get("/ui/static/app.js")
            assert script.status_code == 200
            assert script.content == (REPO_ROOT / "app/ui/static/app.js").read_bytes()
            refused = client.post("/admin/models/cnn/reinitialize", json={"seed": 2})
            assert refused.status_code == 401
            reinit = client.post(
                "/admin/models/cnn/reinitialize", json={"seed": 2}, headers=admin_headers()
            )
            assert reinit.status_code == 200
            info = client.get("/v1/models/cnn").json()
            assert info["parameters_sha256"] == reinit.json()["parameters_sha256"]
        reply = _grpc_infer(grpc_port)
        assert reply.parameters["parameters_sha256"].string_param == info["parameters_sha256"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    # granian's access lines go through the app's log config, stamped with the request id
    access = [line for line in log.read_text().splitlines() if "granian.access" in line]
    assert any("[granian-trace-1]" in line and "GET /v1/models/cnn " in line for line in access)


def test_granian_drains_requests_in_flight_on_sigterm_without_access_log(tmp_path: Path) -> None:
    """Predictions held in the batching queue when SIGTERM arrives are still answered."""
    log = tmp_path / "server.log"
    env = _env(
        0,
        TORCHGATE_ACCESS_LOG="false",
        TORCHGATE_SERVER="granian",
        TORCHGATE_MAX_BATCH_DELAY_MS="1500",  # each batch waits this long for company
        TORCHGATE_MAX_BATCH_SIZE="64",
    )
    with serve_process(env, log) as (port, process):
        with ThreadPoolExecutor(4) as pool:
            url = f"http://127.0.0.1:{port}/v1/models/cnn/predict"
            calls = [
                pool.submit(httpx.post, url, content=PNG, headers=RAW, timeout=60) for _ in range(4)
            ]
            time.sleep(0.5)
            process.send_signal(signal.SIGTERM)
            assert [call.result().status_code for call in calls] == [200] * 4
        assert process.wait(60) == 0
    text = log.read_text()
    assert "Starting granian" in text
    assert "granian.access" not in text


def test_granian_workers_share_one_version_and_one_metrics(tmp_path: Path) -> None:
    workers, grpc_port = 2, free_port()
    env = _env(grpc_port, TORCHGATE_HEARTBEAT_S="0.5", TORCHGATE_PROCESS_TIMEOUT_S="3")
    args = (*GRANIAN, "--workers", str(workers))
    with serve_process(env, tmp_path / "server.log", args=args) as (port, process):
        base = f"http://127.0.0.1:{port}"
        with fresh_client(base) as client:

            def every_worker_applies_a_reload() -> bool:
                answer = client.post("/admin/models/cnn/reload", headers=admin_headers())
                return answer.status_code == 200 and len(answer.json()["processes"]) == workers

            _wait_for(every_worker_applies_a_reload)
            body = reinitialize_everywhere(client, workers)
            answered_by = set()
            for _ in range(60):
                predicted = client.post("/v1/models/cnn/predict", content=PNG, headers=RAW)
                assert predicted.status_code == 200
                assert predicted.headers["X-Model-Version"] == str(body["parameters_version"])
                assert predicted.headers["X-Model-Parameters-SHA256"] == body["parameters_sha256"]
                admin = client.get("/admin/models/cnn/accuracy", headers=admin_headers())
                answered_by.add(admin.headers["X-Torchgate-Process"])
            assert len(answered_by) == workers  # both workers took connections on the one port
            metrics = client.get("/metrics").text
        for _ in range(10):  # every worker binds the gRPC port (SO_REUSEPORT)
            reply = _grpc_infer(grpc_port)
            assert reply.parameters["parameters_sha256"].string_param == body["parameters_sha256"]
        ready = [
            sample.value
            for family in text_string_to_metric_families(metrics)
            for sample in family.samples
            if sample.name == "torchgate_model_status" and sample.labels.get("status") == "ready"
        ]
        assert sum(ready) == workers  # one /metrics sums the workers' samples
        process.send_signal(signal.SIGTERM)
        assert process.wait(90) == 0


def test_granian_refuses_a_separate_admin_listener() -> None:
    env = _env(0, TORCHGATE_ADMIN_PORT=str(free_port()))
    completed = subprocess.run(
        [sys.executable, "-m", "app", "serve", *GRANIAN],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 2
    assert "TORCHGATE_ADMIN_PORT needs TORCHGATE_SERVER=uvicorn" in completed.stderr


def test_granian_missing_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, settings_factory: Callable
) -> None:
    monkeypatch.setitem(sys.modules, "granian.server", None)  # as if it were not installed
    with pytest.raises(ConfigurationError, match=r"pip install 'torchgate\[granian\]'"):
        run_granian(settings_factory(), "127.0.0.1", free_port(), "info", {})
