"""What one closed-loop load run is asked to do and what it reports, whichever tool ran it."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from torchgate_bench.latency import LatencySummary

# A target whose url starts so is a gRPC server's address (``grpc://host:port``).
GRPC_SCHEME = "grpc://"
# One exchange of the Python load generator, over HTTP or gRPC: None when answered with
# success, else the kind of failure ("status": answered with an error; "timeout" and
# "transport": never answered).
Send = Callable[[], Awaitable[str | None]]


@dataclass(frozen=True)
class LoadTarget:
    """One kind of request, repeated: a GET with no body, or a POST of a prepared body file;
    for a ``grpc://host:port`` url, ``method`` is the gRPC method and the file its message.

    The body is a file so that ``wrk`` (reading it from Lua) and the Python client send the
    very same bytes.
    """

    url: str
    method: str = "GET"
    body_path: Path | None = None
    content_type: str | None = None
    images_per_request: int = 0
    headers: tuple[tuple[str, str], ...] = ()  # more request headers (v2's header length)


@dataclass(frozen=True)
class LoadPlan:
    """C connections, each sending its next request when the previous answer arrives."""

    concurrency: int
    duration_s: float
    warmup_s: float = 0.0
    timeout_s: float = 60.0


@dataclass(frozen=True)
class LoadResult:
    """Counts over the measured period only (warm-up excluded)."""

    tool: str
    requests: int
    errors: int
    duration_s: float
    latency: LatencySummary
    images_per_request: int = 0
    error_kinds: dict[str, int] | None = None
    # CPU the load generator itself used over the measured period (it shares the machine)
    client_cpu_s: float | None = None

    @property
    def ok_requests(self) -> int:
        return max(0, self.requests - self.errors)

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else math.nan

    @property
    def images_per_s(self) -> float:
        """Only answered requests count: an error classified no image."""
        if self.duration_s <= 0:
            return math.nan
        return self.ok_requests * self.images_per_request / self.duration_s

    def to_dict(self) -> dict[str, Any]:
        """Flat figures plus the derived rates, for the JSON report and the loadgen pipe."""
        return {
            **asdict(self),
            "requests_per_s": self.requests_per_s,
            "images_per_s": self.images_per_s,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoadResult:
        return cls(
            tool=str(data["tool"]),
            requests=int(data["requests"]),
            errors=int(data["errors"]),
            duration_s=float(data["duration_s"]),
            latency=LatencySummary(**data["latency"]),
            images_per_request=int(data.get("images_per_request", 0)),
            error_kinds=data.get("error_kinds"),
            client_cpu_s=data.get("client_cpu_s"),
        )


def merge_results(results: list[LoadResult]) -> LoadResult:
    """Counts and durations summed; latency from the slice with the median rate (percentiles
    of separate runs cannot be combined exactly)."""
    middle = sorted(results, key=lambda r: r.requests_per_s)[len(results) // 2]
    cpu = [r.client_cpu_s for r in results]
    return replace(
        middle,
        requests=sum(r.requests for r in results),
        errors=sum(r.errors for r in results),
        duration_s=sum(r.duration_s for r in results),
        client_cpu_s=None if None in cpu else sum(c for c in cpu if c is not None),
    )
