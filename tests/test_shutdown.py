"""SIGTERM to a real server drains what is in flight (HTTP and gRPC), exits 0 and stops
accepting connections."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from tests.conftest import free_port, image_bytes, serve_process

IN_FLIGHT = 8
IMAGES_PER_REQUEST = 4
CHUNK = 16 * 1024


GRPC_PORT = free_port()


@pytest.fixture
def alexnet_server(weights_dir: Path, tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen]]:
    env = {
        "TORCHGATE_MODELS": "alexnet",
        "TORCHGATE_WEIGHTS_DIR": str(weights_dir),
        "TORCHGATE_DOWNLOAD_WEIGHTS": "false",
        "TORCHGATE_VERIFY_WEIGHTS": "false",
        "TORCHGATE_DEVICE": "cpu",
        "TORCHGATE_GRPC_PORT": str(GRPC_PORT),
    }
    with serve_process(env, tmp_path / "server.log") as (port, process):
        yield port, process


def _multipart(url: str) -> tuple[dict[str, str], bytes]:
    files = [
        ("file", (f"{i}.jpg", image_bytes(color=(40 * i, 90, 200)), "image/jpeg"))
        for i in range(IMAGES_PER_REQUEST)
    ]
    request = httpx.Request("POST", url, files=files)
    body = request.read()
    return {"Content-Type": request.headers["Content-Type"]}, body


def _gated_body(body: bytes, started: threading.Barrier, release: threading.Event) -> Iterator:
    """The first chunk, then a pause until the signal has been sent: the request is surely in
    flight (headers and part of the body with the server) when SIGTERM arrives."""
    yield body[:CHUNK]
    started.wait(30)
    assert release.wait(30)
    for offset in range(CHUNK, len(body), CHUNK):
        yield body[offset : offset + CHUNK]


def test_sigterm_drains_in_flight_predictions_then_exits_zero(
    alexnet_server: tuple[int, subprocess.Popen],
) -> None:
    port, process = alexnet_server
    url = f"http://127.0.0.1:{port}/v1/models/alexnet/predict"
    headers, body = _multipart(url)
    started = threading.Barrier(IN_FLIGHT + 1)
    release = threading.Event()

    def send() -> httpx.Response:
        with httpx.Client(timeout=60) as client:
            return client.post(url, content=_gated_body(body, started, release), headers=headers)

    with ThreadPoolExecutor(IN_FLIGHT) as pool:
        futures = [pool.submit(send) for _ in range(IN_FLIGHT)]
        try:
            started.wait(30)  # every request has sent its headers and a first chunk
            time.sleep(0.3)  # ... and the server has read them
            process.send_signal(signal.SIGTERM)
            time.sleep(0.5)  # the server is now draining: its listening socket is closed
            with pytest.raises(httpx.ConnectError):
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        finally:
            release.set()
        responses = [future.result(60) for future in futures]

    assert [r.status_code for r in responses] == [200] * IN_FLIGHT, [r.text for r in responses]
    assert all(len(r.json()["predictions"]) == IMAGES_PER_REQUEST for r in responses)
    assert process.wait(30) == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)


def test_sigterm_lets_grpc_calls_in_flight_finish_and_refuses_new_ones(
    alexnet_server: tuple[int, subprocess.Popen],
) -> None:
    _, process = alexnet_server
    target = f"127.0.0.1:{GRPC_PORT}"
    images = np.array([image_bytes(color=(30 * i, 90, 200)) for i in range(64)], np.object_)

    def infer() -> np.ndarray:
        with triton.InferenceServerClient(target) as client:
            tensor = triton.InferInput("image", [len(images)], "BYTES")
            tensor.set_data_from_numpy(images)
            return client.infer("alexnet", [tensor], client_timeout=60).as_numpy("probabilities")

    with ThreadPoolExecutor(IN_FLIGHT // 2) as pool:
        futures = [pool.submit(infer) for _ in range(IN_FLIGHT // 2)]
        time.sleep(0.5)  # 64 images to decode and classify each: all of them still in flight
        assert not any(future.done() for future in futures)
        process.send_signal(signal.SIGTERM)
        refused = None
        deadline = time.monotonic() + 10
        while refused is None and time.monotonic() < deadline:
            try:
                with triton.InferenceServerClient(target) as client:
                    client.is_server_live(client_timeout=2)
            except InferenceServerException as exc:
                refused = exc
            time.sleep(0.05)
        answers = [future.result(60) for future in futures]

    assert all(answer.shape == (len(images), 1000) for answer in answers)
    assert refused is not None and refused.status() in (
        "StatusCode.UNAVAILABLE",
        "StatusCode.DEADLINE_EXCEEDED",
    )
    assert process.wait(30) == 0
