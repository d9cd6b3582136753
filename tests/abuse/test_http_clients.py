"""Clients that hold HTTP connections open for free: stalled uploads, slow heads and bodies, and
head blocks of megabytes. Each is cut within its deadline, while /healthz stays fast and ordinary
predicts are served."""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest

from tests.helpers.abuse import LIMITS, AbuseServer, Figures, Watch, assert_service_held

pytestmark = pytest.mark.integration

HEADER_TIMEOUT_S = float(LIMITS["TORCHGATE_HEADER_TIMEOUT_S"])
CHUNK_TIMEOUT_S = float(LIMITS["TORCHGATE_BODY_CHUNK_TIMEOUT_S"])
BODY_TIMEOUT_S = float(LIMITS["TORCHGATE_BODY_TIMEOUT_S"])
MARGIN_S = 2.5  # scheduling on a loaded 2-core machine
PREDICT_HEAD = (
    "POST /v1/models/cnn/predict HTTP/1.1\r\nHost: abuse\r\nContent-Type: image/png\r\n"
    "Content-Length: {length}\r\n\r\n"
)


def _connect(server: AbuseServer) -> socket.socket:
    address = urlsplit(server.base_url)
    sock = socket.create_connection((address.hostname, address.port), timeout=30)
    return sock


def _closed_after(sock: socket.socket, started: float, limit_s: float) -> tuple[float, bytes]:
    """Seconds from ``started`` until the server closed (or answered and closed), and what it
    answered; fails if it is still open after ``limit_s``."""
    sock.settimeout(0.2)
    answer = b""
    while time.monotonic() - started < limit_s:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - started, answer
        if not data:
            return time.monotonic() - started, answer
        answer += data
    raise AssertionError(f"still open after {limit_s} s (answered {answer[:80]!r})")


def _dripping_head(server: AbuseServer) -> tuple[float, bytes]:
    """Slowloris: a request line, then a header line every half second, never the blank line."""
    sock = _connect(server)
    started = time.monotonic()
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        while time.monotonic() - started < HEADER_TIMEOUT_S + MARGIN_S:
            time.sleep(0.5)
            sock.sendall(b"X-Drip: 1\r\n")
    except OSError:
        return time.monotonic() - started, b""
    finally:
        sock.close()
    raise AssertionError("the server kept reading a head that never ended")


def test_stalled_uploads_are_cut_and_hold_nothing(
    abuse_server: AbuseServer, record_figures: list[Figures]
) -> None:
    """64 uploads declare 20 MB each (1.2 GB, twenty times the 64 MiB budget), send 256 KiB
    and stall: they hold only what they sent, and each is cut at the body's chunk deadline."""
    sockets = [_connect(abuse_server) for _ in range(64)]
    with Watch("stalled Content-Length uploads", abuse_server.base_url, abuse_server.pid) as watch:
        for sock in sockets:
            sock.sendall(PREDICT_HEAD.format(length=20_000_000).encode() + b"\0" * 256 * 1024)
        started = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            closed = list(
                pool.map(lambda s: _closed_after(s, started, CHUNK_TIMEOUT_S + MARGIN_S), sockets)
            )
    for sock in sockets:
        sock.close()
    figures = watch.figures()
    record_figures.append(figures)
    assert_service_held(figures)
    answers = {answer.split(b"\r\n", 1)[0] for _, answer in closed}
    assert answers <= {b"HTTP/1.1 408 Request Timeout", b""}, answers
    assert max(seconds for seconds, _ in closed) <= CHUNK_TIMEOUT_S + MARGIN_S


def test_slowloris_heads_are_cut_at_the_head_deadline(
    abuse_server: AbuseServer, record_figures: list[Figures]
) -> None:
    with (
        Watch("slowloris heads (50)", abuse_server.base_url, abuse_server.pid) as watch,
        ThreadPoolExecutor(50) as pool,
    ):
        cut = list(pool.map(lambda _: _dripping_head(abuse_server), range(50)))
    figures = watch.figures()
    record_figures.append(figures)
    assert_service_held(figures)
    assert max(seconds for seconds, _ in cut) <= HEADER_TIMEOUT_S + MARGIN_S


def test_slow_bodies_are_cut_at_the_whole_body_deadline(
    abuse_server: AbuseServer, record_figures: list[Figures]
) -> None:
    """A kilobyte every second never trips the chunk deadline; the whole body's does."""

    def drip_body(_: int) -> tuple[float, bytes]:
        sock = _connect(abuse_server)
        started = time.monotonic()
        try:
            sock.sendall(PREDICT_HEAD.format(length=1_000_000).encode())
            while time.monotonic() - started < BODY_TIMEOUT_S + MARGIN_S:
                sock.sendall(b"\0" * 1024)
                time.sleep(CHUNK_TIMEOUT_S / 2)
        except OSError:
            pass
        try:
            return _closed_after(sock, started, BODY_TIMEOUT_S + 2 * MARGIN_S)
        finally:
            sock.close()

    with (
        Watch("slow bodies (20)", abuse_server.base_url, abuse_server.pid) as watch,
        ThreadPoolExecutor(20) as pool,
    ):
        cut = list(pool.map(drip_body, range(20)))
    figures = watch.figures()
    record_figures.append(figures)
    assert_service_held(figures)
    for seconds, answer in cut:
        assert seconds <= BODY_TIMEOUT_S + 2 * MARGIN_S
        assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer[:80]


def test_a_head_of_ten_megabytes_is_refused_after_its_bound(
    abuse_server: AbuseServer, record_figures: list[Figures]
) -> None:
    block = b"GET /healthz HTTP/1.1\r\n" + b"".join(
        b"X-Field-%d: %s\r\n" % (i, b"v" * 90) for i in range(100_000)
    )  # 10 MB of header fields
    sent = 0
    with Watch("a 10 MB head block", abuse_server.base_url, abuse_server.pid) as watch:
        sock = _connect(abuse_server)
        try:
            for start in range(0, len(block), 64 * 1024):
                sock.sendall(block[start : start + 64 * 1024])
                sent += 64 * 1024
        except OSError:
            pass  # cut: what the server wanted
        finally:
            sock.close()
        time.sleep(1)
    figures = watch.figures()
    record_figures.append(figures)
    assert_service_held(figures)
    assert sent < 4 * 2**20, f"the server read {sent:,} bytes of one head"
    assert figures.rss_growth_mib < 50
