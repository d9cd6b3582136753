"""The guard around uvicorn's protocol: request heads timed and bounded, bodies left alone."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from app.api.connections import GuardedHttpProtocol, _head_end
from tests.helpers.servers import free_port

pytestmark = pytest.mark.integration  # a real uvicorn server

HEADER_TIMEOUT_S = 1.0
MAX_HEADER_BYTES = 4096


async def _echo_length(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    """Reads the body and answers its length, reporting to the guard as the middleware does."""
    if scope["type"] != "http":
        return
    guard = GuardedHttpProtocol.by_client.get(scope.get("client"))
    if guard is not None:
        guard.request_started(None)
    size, more = 0, True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    body = str(size).encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    if guard is not None:
        guard.response_sent()


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    GuardedHttpProtocol.configure(HEADER_TIMEOUT_S, MAX_HEADER_BYTES)
    chosen = free_port()
    config = uvicorn.Config(
        _echo_length,
        host="127.0.0.1",
        port=chosen,
        http=GuardedHttpProtocol,
        log_level="warning",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield chosen
    server.should_exit = True
    thread.join(5)


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def _answer(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data or not data.split(b"\r\n\r\n", 1)[1]:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _seconds_until_closed(sock: socket.socket, limit_s: float = 10.0) -> float:
    started = time.monotonic()
    sock.settimeout(limit_s)
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass
    return time.monotonic() - started


def test_the_end_of_a_head_is_found_across_line_endings() -> None:
    assert _head_end(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody") == 27
    assert _head_end(b"GET / HTTP/1.1\nHost: x\n\nbody") == 24
    assert _head_end(b"GET / HTTP/1.1\r\nHost: x\r\n") == -1


def test_keep_alive_requests_and_large_bodies_pass(port: int) -> None:
    with _connect(port) as sock:
        for _ in range(3):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _answer(sock).endswith(b"\r\n\r\n0")
        body = b"\0" * (50 * MAX_HEADER_BYTES)  # right behind its head, in the same writes
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        assert _answer(sock).endswith(b"\r\n\r\n%d" % len(body))


def test_a_head_split_across_reads_is_still_found(port: int) -> None:
    with _connect(port) as sock:
        for piece in (b"GET / HTTP/1.1\r\nHost: x\r\n", b"\r", b"\n"):
            sock.sendall(piece)
            time.sleep(0.05)
        assert _answer(sock).startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("head", [b"", b"GET / HTTP/1.1\r\nX-Slow: 1\r\n"], ids=["silent", "slow"])
def test_a_head_that_does_not_arrive_in_time_is_cut(port: int, head: bytes) -> None:
    with _connect(port) as sock:
        sock.sendall(head)
        waited = _seconds_until_closed(sock)
    assert HEADER_TIMEOUT_S - 0.1 <= waited <= HEADER_TIMEOUT_S + 2


def test_a_slow_second_head_on_a_kept_connection_is_cut(port: int) -> None:
    with _connect(port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _answer(sock).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        try:
            sock.sendall(b"GET / HTTP/1.1\r\n")
            while time.monotonic() - started < HEADER_TIMEOUT_S + 3:
                time.sleep(0.2)
                sock.sendall(b"X-Drip: 1\r\n")
        except OSError:
            pass
        assert time.monotonic() - started <= HEADER_TIMEOUT_S + 2


def test_a_head_larger_than_the_bound_is_cut_at_once(port: int) -> None:
    """10 MB of header fields: the server closes once past the bound; the client learns of it
    after what the sockets' buffers hold."""
    with _connect(port) as sock:
        sent = 0
        try:
            sock.sendall(b"GET / HTTP/1.1\r\n")
            while sent < 10 * 2**20:
                sock.sendall(b"X-Field: " + b"v" * 1000 + b"\r\n")
                sent += 1011
        except OSError:
            pass
    assert sent < 4 * 2**20
