"""SIGTERM to a real server: HTTP and gRPC stop taking new work at that moment (not gRPC once
HTTP has drained), both finish what is in flight, and the process exits 0 within the grace
period. In-process checks of the drain: tests/test_draining.py."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from app.api.grpc.server import SHUTDOWN_GRACE_S
from tests.helpers.images import image_bytes
from tests.helpers.servers import free_port, serve_process

pytestmark = pytest.mark.integration

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
        # one image per forward, so that a request of many images surely outlasts the signal
        "TORCHGATE_MAX_BATCH_SIZE": "alexnet=1",
    }
    with serve_process(env, tmp_path / "server.log") as (port, process):
        yield port, process


def _multipart(url: str) -> tuple[dict[str, str], bytes]:
    """A predict request of IMAGES_PER_REQUEST JPEG files: its headers and body."""
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


def _held_posts(
    pool: ThreadPoolExecutor, url: str, count: int, release: threading.Event
) -> list[Future[httpx.Response]]:
    """``count`` predict requests whose bodies stop after their first chunk until ``release``:
    surely in flight, with the server, when SIGTERM comes. Returns once they all are."""
    headers, body = _multipart(url)
    started = threading.Barrier(count + 1)

    def send() -> httpx.Response:
        with httpx.Client(timeout=60) as client:
            return client.post(url, content=_gated_body(body, started, release), headers=headers)

    futures = [pool.submit(send) for _ in range(count)]
    started.wait(30)  # every request has sent its headers and a first chunk
    time.sleep(0.3)  # ... and the server has read them
    return futures


def test_sigterm_drains_in_flight_predictions_then_exits_zero(
    alexnet_server: tuple[int, subprocess.Popen],
) -> None:
    port, process = alexnet_server
    release = threading.Event()
    with ThreadPoolExecutor(IN_FLIGHT) as pool:
        try:
            url = f"http://127.0.0.1:{port}/v1/models/alexnet/predict"
            futures = _held_posts(pool, url, IN_FLIGHT, release)
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


def _grpc_refusals(target: str, probes: int) -> list[str]:
    """The status of each of ``probes`` new calls (new connections): "OK" when one answers."""
    statuses = []
    for _ in range(probes):
        try:
            with triton.InferenceServerClient(target) as client:
                client.is_server_ready(client_timeout=5)
            statuses.append("OK")
        except InferenceServerException as exc:
            statuses.append(str(exc.status()))
    return statuses


def _http_connects(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    except httpx.ConnectError:
        return False
    return True


def test_sigterm_stops_grpc_with_http_and_both_finish_what_is_in_flight(
    alexnet_server: tuple[int, subprocess.Popen],
) -> None:
    port, process = alexnet_server
    target = f"127.0.0.1:{GRPC_PORT}"
    # 64 large photos per call, one forward each: about a second of work per call at least
    images = np.array(
        [image_bytes(size=(1024, 768), color=(30 * i, 90, 200)) for i in range(64)], np.object_
    )

    def infer() -> np.ndarray:
        with triton.InferenceServerClient(target) as client:
            tensor = triton.InferInput("image", [len(images)], "BYTES")
            tensor.set_data_from_numpy(images)
            return client.infer("alexnet", [tensor], client_timeout=60).as_numpy("probabilities")

    release = threading.Event()
    with ThreadPoolExecutor(IN_FLIGHT) as pool:
        try:
            posts = _held_posts(
                pool, f"http://127.0.0.1:{port}/v1/models/alexnet/predict", 4, release
            )
            calls = [pool.submit(infer) for _ in range(2)]
            time.sleep(0.5)  # 64 images to decode and classify each: both still in flight
            finished = [call.exception() or "answered" for call in calls if call.done()]
            assert not finished, finished
            signalled = time.monotonic()
            process.send_signal(signal.SIGTERM)
            time.sleep(0.5)  # the server has seen it (uvicorn looks ten times a second)
            # HTTP requests are still in flight (HTTP has not drained), and yet gRPC already
            # refuses new calls, as HTTP refuses new connections.
            refusals = _grpc_refusals(target, probes=3)
            assert not any(post.done() for post in posts)
            assert not _http_connects(port)
        finally:
            release.set()
        responses = [post.result(60) for post in posts]
        answers = [call.result(60) for call in calls]

    assert refusals == ["StatusCode.UNAVAILABLE"] * 3
    assert [r.status_code for r in responses] == [200] * 4, [r.text for r in responses]
    assert all(answer.shape == (len(images), 1000) for answer in answers)
    assert process.wait(SHUTDOWN_GRACE_S) == 0
    assert time.monotonic() - signalled < SHUTDOWN_GRACE_S


def _wait_until_every_worker_is_ready(port: int, in_a_row: int = 20) -> None:
    """serve_process waited for one worker's /readyz; new connections reach any of them."""
    deadline, ready = time.monotonic() + 120, 0
    while ready < in_a_row:
        assert time.monotonic() < deadline, "not every worker became ready"
        answer = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        ready = ready + 1 if answer.status_code == 200 else 0
        time.sleep(0 if ready else 0.2)


def test_with_workers_every_worker_stops_grpc_at_the_signal(tmp_path: Path) -> None:
    """uvicorn's supervisor passes SIGTERM on to each worker; each stops its gRPC server then,
    though HTTP requests keep both of them draining (SO_REUSEPORT spreads the probes' new
    connections over the two)."""
    grpc_port = free_port()
    env = {
        "TORCHGATE_MODELS": "cnn",
        "TORCHGATE_DEVICE": "cpu",
        "TORCHGATE_WORKERS": "2",
        "TORCHGATE_GRPC_PORT": str(grpc_port),
    }
    release = threading.Event()
    with (
        serve_process(env, tmp_path / "server.log") as (port, process),
        ThreadPoolExecutor(IN_FLIGHT) as pool,
    ):
        _wait_until_every_worker_is_ready(port)
        try:
            url = f"http://127.0.0.1:{port}/v1/models/cnn/predict"
            posts = _held_posts(pool, url, IN_FLIGHT, release)
            assert _grpc_refusals(f"127.0.0.1:{grpc_port}", probes=1) == ["OK"]
            process.send_signal(signal.SIGTERM)
            time.sleep(1.0)  # the supervisor passes it on, each worker sees it
            refusals = _grpc_refusals(f"127.0.0.1:{grpc_port}", probes=10)
            assert not any(post.done() for post in posts)
        finally:
            release.set()
        responses = [post.result(60) for post in posts]
        assert process.wait(SHUTDOWN_GRACE_S) == 0

    assert refusals == ["StatusCode.UNAVAILABLE"] * 10
    assert [r.status_code for r in responses] == [200] * IN_FLIGHT, [r.text for r in responses]
