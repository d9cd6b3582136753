"""The figures of a torchgate-vs-peer comparison: alternating rounds, their medians, ratios.

This shared machine's speed drifts by 10-20% over a minute, so the two servers are measured
in alternating slices, and each round's first side alternates too (ABBA...): a ratio of the
two sides within a round, then the median over rounds, cancels most of the drift.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from torchgate_bench.load import LoadResult
from torchgate_bench.peers.configs import PeerConfig

TORCHGATE = "torchgate"


class Configuration(Protocol):
    """What a pre-pass needs of a peer's configuration (``PeerConfig``, ``V2Config``)."""

    @property
    def label(self) -> str: ...

    def to_dict(self) -> dict[str, object]: ...


C = TypeVar("C", bound=Configuration)


def round_order(index: int, peer: str) -> tuple[str, str]:
    """Which side goes first in round ``index``: torchgate in even rounds, the peer in odd."""
    return (TORCHGATE, peer) if index % 2 == 0 else (peer, TORCHGATE)


def ok_rate(result: LoadResult) -> float:
    """Answered (non-error) requests per second: an error served no prediction."""
    return result.ok_requests / result.duration_s if result.duration_s > 0 else 0.0


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


def _median(values: list[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return statistics.median(known) if known else None


def _figures(result: LoadResult) -> dict[str, Any]:
    return {
        "requests_per_s": ok_rate(result),
        "requests": result.requests,
        "errors": result.errors,
        "duration_s": result.duration_s,
        "p50_ms": result.latency.p50_ms,
        "p99_ms": result.latency.p99_ms,
        "client_cpu_s": result.client_cpu_s,
    }


@dataclass(frozen=True)
class Round:
    """One round: torchgate's predict slice, the peer's, and torchgate's /healthz slice."""

    order: tuple[str, str]
    torchgate: LoadResult
    peer: LoadResult
    healthz: LoadResult | None = None

    @property
    def ratio(self) -> float | None:
        """torchgate / peer, answered requests per second."""
        return _ratio(ok_rate(self.torchgate), ok_rate(self.peer))

    @property
    def served_over_healthz(self) -> float | None:
        if self.healthz is None:
            return None
        return _ratio(ok_rate(self.torchgate), ok_rate(self.healthz))

    def to_dict(self) -> dict[str, Any]:
        return {
            "order": list(self.order),
            "torchgate": _figures(self.torchgate),
            "peer": _figures(self.peer),
            "healthz": _figures(self.healthz) if self.healthz is not None else None,
            "ratio": self.ratio,
            "served_over_healthz": self.served_over_healthz,
        }


@dataclass(frozen=True)
class GridEntry(Generic[C]):
    """One configuration of the peer's pre-pass and what it served (or why it could not)."""

    config: C
    result: LoadResult | None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        figures = _figures(self.result) if self.result is not None else {"error": self.error}
        return {"config": self.config.to_dict(), **figures}


def best_config(grid: list[GridEntry[C]]) -> C:
    """The configuration that answered the most requests per second; one with errors only
    when every configuration had some."""
    measured = [(entry.config, entry.result) for entry in grid if entry.result is not None]
    if not measured:
        raise ValueError("the pre-pass measured no configuration")
    clean = [(config, result) for config, result in measured if result.errors == 0] or measured
    return max(clean, key=lambda pair: ok_rate(pair[1]))[0]


@dataclass
class PeerComparison:
    peer: str
    config: PeerConfig
    grid: list[GridEntry[PeerConfig]] = field(default_factory=list)
    rounds: list[Round] = field(default_factory=list)
    answers: dict[str, Any] = field(default_factory=dict)  # the equivalence check

    @property
    def median_ratio(self) -> float | None:
        return _median([r.ratio for r in self.rounds])

    @property
    def median_served_over_healthz(self) -> float | None:
        return _median([r.served_over_healthz for r in self.rounds])

    def median(self, side: str, figure: str) -> float | None:
        """The median over rounds of one side's figure (``requests_per_s``, ``p99_ms``...)."""
        values: list[float | None] = []
        for entry in self.rounds:
            result = {"torchgate": entry.torchgate, "peer": entry.peer, "healthz": entry.healthz}
            chosen = result[side]
            values.append(None if chosen is None else _figures(chosen)[figure])
        return _median(values)

    def to_dict(self) -> dict[str, Any]:
        return {
            "peer": self.peer,
            "config": self.config.to_dict(),
            "grid": [entry.to_dict() for entry in self.grid],
            "answers": self.answers,
            "rounds": [entry.to_dict() for entry in self.rounds],
            "median_ratio": self.median_ratio,
            "median_served_over_healthz": self.median_served_over_healthz,
            "median": {
                side: {
                    name: self.median(side, name) for name in ("requests_per_s", "p50_ms", "p99_ms")
                }
                for side in ("torchgate", "peer", "healthz")
            },
        }
