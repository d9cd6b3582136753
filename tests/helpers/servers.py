"""Real server processes on loopback: free ports, ``python -m app serve`` (alone or with the
four small models the protocol tests share), and haproxy in front of several."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.helpers.apps import ADMIN_TOKEN
from tests.helpers.programs import require_binary
from tests.helpers.repo import REPO_ROOT
from tests.helpers.weights import fashion_checkpoints

# What the modules that drive a real server with Triton's clients share: one server, booted once.
REAL_SERVER_MAX_UPLOAD_BYTES = 4_000_000


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A loopback port no one listens on now: the kernel's pick (so xdist workers, separate
    processes, get different ones), and never one this process was given before."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def serve_refusal(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -m app serve`` run to its end: what a start the service must refuse prints."""
    return subprocess.run(
        [sys.executable, "-m", "app", "serve", "--port", "0"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _spawn(
    env: dict[str, str], log_path: Path, port: int, args: tuple[str, ...]
) -> subprocess.Popen:
    full_env = {
        **os.environ,
        "TORCHGATE_PORT": str(port),
        "TORCHGATE_GRPC_PORT": str(free_port()),  # never Triton's 8001: tests run side by side
        "PYTHONUNBUFFERED": "1",
        **env,
    }
    with log_path.open("w") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "app", "serve", *args],
            cwd=REPO_ROOT,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so a hung one can be killed whole
        )


def _stop(processes: list[subprocess.Popen]) -> None:
    """SIGTERM to every one still running, then wait for each (they drain side by side);
    one that outlives 30 s is killed with its process group, and that fails the test."""
    running = [process for process in processes if process.poll() is None]
    for process in running:
        process.terminate()
    hung = []
    for process in running:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:  # never leave a server (and its workers) behind
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
            hung.append(process.pid)
    if hung:
        raise AssertionError(f"servers {hung} did not stop within 30 s of SIGTERM")


@contextmanager
def serve_process(
    env: dict[str, str],
    log_path: Path,
    port: int | None = None,
    wait_ready: bool = True,
    args: tuple[str, ...] = (),
) -> Iterator[tuple[int, subprocess.Popen]]:
    """A real ``python -m app serve [args]`` on a loopback port (a free one unless given),
    ready unless told not to wait; the port and process.

    ``env`` is added to this process's environment; the server's output goes to ``log_path``.
    """
    port = port or free_port()
    process = _spawn(env, log_path, port, args)
    try:
        if wait_ready:
            wait_until_ready(port, process, log_path)
        yield port, process
    finally:
        _stop([process])


@contextmanager
def serve_processes(
    env: dict[str, str], log_paths: list[Path]
) -> Iterator[list[tuple[int, subprocess.Popen]]]:
    """One server per log path, all with ``env``: started at once, ready, stopped at once
    (replicas of one service boot side by side, as they would in a deployment)."""
    started: list[tuple[int, subprocess.Popen]] = []
    try:
        for log_path in log_paths:
            port = free_port()
            started.append((port, _spawn(env, log_path, port, ())))
        for (port, process), log_path in zip(started, log_paths, strict=True):
            wait_until_ready(port, process, log_path)
        yield started
    finally:
        _stop([process for _, process in started])


def wait_until_ready(
    port: int, process: subprocess.Popen, log_path: Path, timeout: float = 120
) -> None:
    """Poll the server's /readyz until 200; fails with its log if it exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, log_path.read_text()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"server did not become ready; its log:\n{log_path.read_text()}")


@dataclass(frozen=True)
class RealServer:
    """A real server's HTTP base URL, gRPC target (host:port) and log file (JSON lines)."""

    http: str
    grpc: str
    log: Path


@contextmanager
def real_server_process(weights_dir: Path, directory: Path) -> Iterator[RealServer]:
    """``python -m app serve`` with alexnet (random weights), cnn, lstm and gan, over HTTP and
    gRPC, with a 4 MB message limit."""
    grpc_port = free_port()
    env = {
        "TORCHGATE_MODELS": "alexnet,cnn,lstm,gan",
        "TORCHGATE_WEIGHTS_DIR": str(weights_dir),
        "TORCHGATE_CHECKPOINT_DIR": str(fashion_checkpoints(directory / "models")),
        "TORCHGATE_DOWNLOAD_WEIGHTS": "false",
        "TORCHGATE_VERIFY_WEIGHTS": "false",
        "TORCHGATE_ADMIN_TOKEN": ADMIN_TOKEN,
        "TORCHGATE_DEVICE": "cpu",
        "TORCHGATE_LOG_FORMAT": "json",
        "TORCHGATE_GRPC_PORT": str(grpc_port),
        "TORCHGATE_MAX_UPLOAD_BYTES": str(REAL_SERVER_MAX_UPLOAD_BYTES),
    }
    log = directory / "server.log"
    with serve_process(env, log) as (port, _):
        yield RealServer(f"http://127.0.0.1:{port}", f"127.0.0.1:{grpc_port}", log)


@contextmanager
def haproxy(backend_ports: list[int], folder: Path) -> Iterator[int]:
    """Debian's haproxy in front of ``backend_ports``, round-robin per request, health-checked
    on /readyz; yields its port."""
    binary = require_binary("haproxy", "haproxy")
    port = free_port()
    servers = "\n".join(
        f"    server s{i} 127.0.0.1:{p} check inter 200ms fall 1 rise 1"
        for i, p in enumerate(backend_ports)
    )
    config = folder / "haproxy.cfg"
    config.write_text(
        "defaults\n    mode http\n    timeout connect 2s\n    timeout client 60s\n"
        "    timeout server 60s\n    retries 3\n    option redispatch\n"
        f"frontend front\n    bind 127.0.0.1:{port}\n    default_backend replicas\n"
        "backend replicas\n    balance roundrobin\n    option httpchk GET /readyz\n"
        f"{servers}\n"
    )
    process = subprocess.Popen(
        [binary, "-f", str(config), "-db"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            time.sleep(0.1)
        else:
            raise AssertionError("haproxy did not come up")
        yield port
    finally:
        process.terminate()
        process.wait(10)
