"""What the bench tests' toy servers (tests/bench/conftest.py fixtures) record, for the tests
that drive them."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class ToyServer:
    """Counts what it answered per route; ``expected_upload`` is what /upload must receive."""

    base_url: str = ""
    counts: Counter[str] = field(default_factory=Counter)
    expected_upload: tuple[str, str, bytes] | None = None


@dataclass
class EchoServer:
    """A gRPC server whose ModelInfer answers any message with an empty one, and fails a
    message of b"fail"; ``received`` counts the messages it got, by content."""

    port: int = 0
    received: Counter[bytes] = field(default_factory=Counter)


@dataclass
class MetricsServer:
    """Serves ``text`` at any path, as a server's /metrics (change it between scrapes)."""

    base_url: str = ""
    text: str = ""
    cpu: float = 0.0

    def cpu_seconds(self) -> float:  # as ServerProcess's, for code that reads both
        return self.cpu
