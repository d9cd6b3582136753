"""Debian's redis-server on a loopback port, for the control store's tests."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from tests.helpers.programs import require_binary
from tests.helpers.servers import free_port


class RedisServer:
    """Debian's redis-server on a loopback port, persisting to ``folder`` (append-only file),
    so a test can stop it and start it again with its data, as a real deployment would;
    ``tls``: that port speaks TLS only (``options`` then name the certificates), and
    ``options`` are more redis-server flags (``--requirepass``, ...)."""

    def __init__(
        self, folder: Path, persist: bool = True, tls: bool = False, options: tuple[str, ...] = ()
    ) -> None:
        self.binary = require_binary("redis-server", "redis-server")
        self.folder = folder
        self.persist = persist
        self.tls = tls
        self.options = options
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        port = str(self.port)
        ports = ["--port", "0", "--tls-port", port] if self.tls else ["--port", port]
        command = [self.binary, *ports]
        command += ["--bind", "127.0.0.1", "--save", "", *self.options]
        command += ["--appendonly", "yes" if self.persist else "no", "--dir", str(self.folder)]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"redis-server exited (port {self.port} taken?)"
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.02)
        raise AssertionError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
