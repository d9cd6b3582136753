"""What an abuse case measures while it runs: whether the service stays up for everyone else.

``Watch`` probes ``/healthz`` as a Kubernetes liveness probe would (a fresh connection each time,
so every worker behind the port gets probed), sends ordinary predicts, and samples the resident
memory of the server and its workers; ``stop`` gives the figures the case asserts on.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.helpers.images import garment_png

PROBE_TIMEOUT_S = 5.0
FIGURES = pytest.StashKey[list["Figures"]]()  # the figures each case measured, for the summary
ADMIN_TOKEN = "abuse-suite-admin-token-0123456789abcdef"
# Tight limits, so that each case is over in seconds (the defaults are docs/security.md's).
LIMITS = {
    "TORCHGATE_HEADER_TIMEOUT_S": "2",
    "TORCHGATE_MAX_HEADER_BYTES": str(32 * 1024),
    "TORCHGATE_BODY_CHUNK_TIMEOUT_S": "2",
    "TORCHGATE_BODY_TIMEOUT_S": "6",
    "TORCHGATE_MAX_UPLOAD_BYTES_IN_FLIGHT": str(64 * 2**20),
    "TORCHGATE_GRPC_MESSAGE_TIMEOUT_S": "3",
}


@dataclass(frozen=True)
class AbuseServer:
    """The server the abuse cases attack: its HTTP and gRPC addresses, and its process."""

    base_url: str
    grpc_target: str
    pid: int
    env: dict[str, str]


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            tree.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry.name))
    return tree


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and every process below it."""
    tree, stack, total = _children(), [pid], 0
    while stack:
        current = stack.pop()
        stack.extend(tree.get(current, []))
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


@dataclass(frozen=True)
class Figures:
    """One case's figures: liveness latency, ordinary traffic served, memory growth."""

    case: str
    healthz_p99_ms: float
    healthz_max_ms: float
    healthz_failed: int
    predicts_ok: int
    predicts: int
    rss_growth_mib: float

    def line(self) -> str:
        return (
            f"{self.case}: /healthz p99 {self.healthz_p99_ms:.0f} ms (max "
            f"{self.healthz_max_ms:.0f}, {self.healthz_failed} failed), normal predicts "
            f"{self.predicts_ok}/{self.predicts}, RSS +{self.rss_growth_mib:.0f} MiB"
        )


class Watch:
    """Probes, ordinary traffic and memory samples in background threads, until ``stop``."""

    def __init__(self, case: str, base_url: str, server_pid: int) -> None:
        self.case = case
        self.base_url = base_url
        self.pid = server_pid
        self._stop = threading.Event()
        self._latencies: list[float] = []
        self._failed_probes = 0
        self._predicts: list[int] = []
        self._rss_before = tree_rss_bytes(server_pid)
        self._rss_peak = self._rss_before
        self._threads = [
            threading.Thread(target=self._probe, daemon=True),
            threading.Thread(target=self._predict, daemon=True),
            threading.Thread(target=self._sample, daemon=True),
        ]

    def __enter__(self) -> Watch:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(PROBE_TIMEOUT_S + 5)

    def _probe(self) -> None:
        while not self._stop.wait(0.02):
            started = time.perf_counter()
            try:
                response = httpx.get(
                    f"{self.base_url}/healthz",
                    timeout=PROBE_TIMEOUT_S,
                    headers={"Connection": "close"},
                )
                failed = response.status_code != 200
            except httpx.HTTPError:
                failed = True
            self._latencies.append((time.perf_counter() - started) * 1000)
            self._failed_probes += failed

    def _predict(self) -> None:
        body = garment_png()
        with httpx.Client(base_url=self.base_url, timeout=30) as client:
            while not self._stop.wait(0.1):
                try:
                    response = client.post(
                        "/v1/models/cnn/predict",
                        content=body,
                        headers={"content-type": "image/png"},
                    )
                    self._predicts.append(response.status_code)
                except httpx.HTTPError:
                    self._predicts.append(0)

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            self._rss_peak = max(self._rss_peak, tree_rss_bytes(self.pid))

    def figures(self) -> Figures:
        latencies = sorted(self._latencies) or [float("nan")]
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        return Figures(
            case=self.case,
            healthz_p99_ms=p99,
            healthz_max_ms=latencies[-1],
            healthz_failed=self._failed_probes,
            predicts_ok=sum(status == 200 for status in self._predicts),
            predicts=len(self._predicts),
            rss_growth_mib=(self._rss_peak - self._rss_before) / 2**20,
        )


def assert_service_held(figures: Figures, max_p99_ms: float = 1000.0) -> None:
    """The case's bar: liveness answered fast throughout, and ordinary clients served."""
    assert figures.healthz_failed == 0, figures.line()
    assert figures.healthz_p99_ms < max_p99_ms, figures.line()
    assert figures.predicts and figures.predicts_ok == figures.predicts, figures.line()
