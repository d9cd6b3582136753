"""A real ``python -m app serve`` child process on a free loopback port: start, wait, measure.

Cold start is timed from spawn to the first 200 from /readyz; memory (resident set) and CPU time
are those of the server and every process below it (uvicorn's workers), read from /proc.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx

HOST = "127.0.0.1"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A port the kernel just handed out on loopback (free unless someone races us for it)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the command name may contain spaces and parentheses: fields start after the last ")"
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants that are alive now."""
    tree = _children()
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(tree.get(current, []))
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (0 once it has gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # after the command name: state is field 3, utime and stime are fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    """VmRSS of one process (0 once it has gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@dataclass
class ServerProcess:
    """Context manager around one server child; the log goes to a file, shown on failure."""

    env: Mapping[str, str]
    serve_args: Sequence[str] = ()
    ready_timeout_s: float = 300.0
    confirmations: int = 1
    log_dir: Path | None = None  # where the log goes (kept there if the server fails)
    keep_log: bool = False  # keep it after a clean stop too
    # after /readyz, wait until no model still builds its graph (eager serves meanwhile), so
    # that a throughput run measures the graphs the server settles on
    settle_graphs: bool = True
    port: int = field(default_factory=free_port)
    # gRPC on a free port too (TORCHGATE_GRPC_PORT in env wins): servers run side by side
    grpc_port: int = field(default_factory=free_port)
    # the checkout whose ``app`` serves (``python -m`` imports from the working directory
    # first): another build of torchgate side by side with this one (bench-builds)
    cwd: Path | None = None
    cold_start_s: float = float("nan")
    _process: subprocess.Popen[bytes] | None = None
    _log: Path | None = None

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def grpc_target(self) -> str:
        return f"{HOST}:{self.grpc_port}"

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def log_tail(self, lines: int = 40) -> str:
        if self._log is None or not self._log.exists():
            return ""
        return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> ServerProcess:
        handle, name = tempfile.mkstemp(
            prefix="torchgate-bench-server-", suffix=".log", dir=self.log_dir
        )
        self._log = Path(name)
        command = [sys.executable, "-m", "app", "serve", "--host", HOST, "--port", str(self.port)]
        self.grpc_port = int(self.env.get("TORCHGATE_GRPC_PORT", self.grpc_port))
        started = time.perf_counter()
        with os.fdopen(handle, "wb") as log:
            self._process = subprocess.Popen(
                [*command, *self.serve_args],
                env={
                    **self.env,
                    "TORCHGATE_GRPC_PORT": str(self.grpc_port),
                    "PYTHONUNBUFFERED": "1",
                },
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                start_new_session=True,  # our own group: a stuck server can be ended as a whole
            )
        try:
            self._wait_ready(started)
            if self.settle_graphs:
                self._wait_graphs(started + self.ready_timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
        if exc_type is None and not self.keep_log and self._log is not None:
            self._log.unlink(missing_ok=True)

    def _ready_once(self) -> bool:
        """One /readyz on a fresh connection, so that with several workers each poll may reach
        a different one (a kept-alive connection would keep asking the same worker)."""
        try:
            response = httpx.get(
                f"{self.base_url}/readyz", timeout=5.0, headers={"Connection": "close"}
            )
        except httpx.TransportError:
            return False
        return response.status_code == 200

    def _wait_ready(self, started: float) -> None:
        """Cold start ends at the first 200; with ``confirmations`` > 1 (several workers) the
        load waits for that many 200s in a row, since each worker loads on its own."""
        assert self._process is not None
        deadline = started + self.ready_timeout_s
        streak = 0
        while time.perf_counter() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"the server exited with status {self._process.returncode} before it "
                    f"was ready; its log ({self._log}) ends with:\n{self.log_tail()}"
                )
            streak = streak + 1 if self._ready_once() else 0
            if streak == 1 and math.isnan(self.cold_start_s):
                self.cold_start_s = time.perf_counter() - started
            if streak >= self.confirmations:
                return
            time.sleep(0.05 if streak == 0 else 0.01)
        raise TimeoutError(
            f"the server was not ready after {self.ready_timeout_s:.0f} s; "
            f"its log ({self._log}) ends with:\n{self.log_tail()}"
        )

    def _graphs_settled(self) -> bool:
        try:
            response = httpx.get(
                f"{self.base_url}/v1/models", timeout=5.0, headers={"Connection": "close"}
            )
        except httpx.TransportError:
            return False
        if response.status_code != 200:
            return False
        return not any(info.get("graph_pending") for info in response.json()["models"])

    def _wait_graphs(self, deadline: float) -> None:
        """Until ``confirmations`` answers in a row (fresh connections: maybe other workers)
        list no model whose graph is still being built."""
        streak = 0
        while time.perf_counter() < deadline:
            streak = streak + 1 if self._graphs_settled() else 0
            if streak >= self.confirmations:
                return
            time.sleep(0.1)
        raise TimeoutError(
            f"the server's graphs were still being built after {self.ready_timeout_s:.0f} s; "
            f"its log ({self._log}) ends with:\n{self.log_tail()}"
        )

    def memory(self) -> tuple[int, int]:
        """(summed RSS in bytes, number of processes) of the server and its descendants."""
        pids = process_tree(self.pid)
        return sum(rss_bytes(pid) for pid in pids), len(pids)

    def cpu_seconds(self) -> float:
        """CPU time used so far by the server and its descendants (live ones only)."""
        return sum(cpu_seconds(pid) for pid in process_tree(self.pid))

    def stop(self, grace_s: float = 30.0) -> None:
        """SIGTERM (uvicorn drains and exits), then SIGKILL to the server's own group."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
