"""The figures of the Open Inference Protocol comparison: which series a round loads, in which
order, and the medians and ratios that judge them.

One round loads every series once (each server, protocol and model), in alternating order
(forward in even rounds, backward in odd ones), so this shared machine's drift lands on every
server alike; a ratio is taken within each round, then its median over the rounds.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from torchgate_bench.load import LoadResult
from torchgate_bench.peers.compare import ok_rate

TORCHGATE = "torchgate"
PROTOCOLS = {"v2": "v2 REST", "v1": "v1 raw PNG", "grpc": "gRPC"}
FIGURES = ("requests_per_s", "p50_ms", "p99_ms")


@dataclass(frozen=True)
class Series:
    """One thing a round loads: a server, over a protocol, for a model, at a concurrency."""

    model: str
    protocol: str  # v2 (REST) | v1 (torchgate's raw-PNG path) | grpc
    server: str  # torchgate | triton | kserve
    concurrency: int

    @property
    def key(self) -> str:
        return f"{self.model} {PROTOCOLS[self.protocol]} {self.server}"


def plan_series(
    peers: tuple[str, ...],
    concurrency: int,
    heavy_model: str | None = "resnet101",
    heavy_concurrency: int = 8,
    heavy_grpc: bool = True,
) -> list[Series]:
    """The cnn through torchgate's v2 REST, its v1 raw path and every peer's REST, then gRPC;
    the heavy model (resnet101) through v2 REST and, unless told otherwise, gRPC."""
    servers = (TORCHGATE, *peers)
    series = [Series("cnn", protocol, TORCHGATE, concurrency) for protocol in ("v2", "v1")]
    series += [Series("cnn", "v2", peer, concurrency) for peer in peers]
    series += [Series("cnn", "grpc", server, concurrency) for server in servers]
    if heavy_model is not None:
        protocols = ("v2", "grpc") if heavy_grpc else ("v2",)
        for protocol in protocols:
            series += [Series(heavy_model, protocol, s, heavy_concurrency) for s in servers]
    return series


def round_series(series: list[Series], index: int) -> list[Series]:
    """Round ``index``'s order: as planned in even rounds, reversed in odd ones."""
    return list(series) if index % 2 == 0 else list(reversed(series))


def _median(values: list[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return statistics.median(known) if known else None


def figures(result: LoadResult) -> dict[str, Any]:
    return {
        "requests_per_s": ok_rate(result),
        "requests": result.requests,
        "errors": result.errors,
        "duration_s": result.duration_s,
        "p50_ms": result.latency.p50_ms,
        "p99_ms": result.latency.p99_ms,
        "client_cpu_s": result.client_cpu_s,
    }


@dataclass
class Measurements:
    """Every series' result in every round (``results[key][round]``)."""

    series: list[Series]
    results: dict[str, list[LoadResult]] = field(default_factory=dict)

    def add(self, series: Series, result: LoadResult) -> None:
        self.results.setdefault(series.key, []).append(result)

    @property
    def models(self) -> list[str]:
        """The models measured, the cnn first."""
        return list(dict.fromkeys(series.model for series in self.series))

    @property
    def rounds(self) -> int:
        return min((len(found) for found in self.results.values()), default=0)

    def median(self, key: str, figure: str) -> float | None:
        return _median([figures(result)[figure] for result in self.results.get(key, [])])

    def errors(self, key: str) -> int:
        return sum(result.errors for result in self.results.get(key, []))

    def round_ratios(self, numerator: str, denominator: str) -> list[float | None]:
        """numerator / denominator answered requests per second, round by round."""
        ours_all, theirs_all = self.results.get(numerator, []), self.results.get(denominator, [])
        ratios: list[float | None] = []
        for ours, theirs in zip(ours_all, theirs_all, strict=False):
            rate = ok_rate(theirs)
            ratios.append(ok_rate(ours) / rate if rate > 0 else None)
        return ratios

    def ratio(self, numerator: str, denominator: str) -> float | None:
        return _median(self.round_ratios(numerator, denominator))

    def best_peer(self, model: str, protocol: str) -> str | None:
        """The peer with the highest median rate for ``model`` over ``protocol``."""
        peers = [s for s in self.series if (s.model, s.protocol) == (model, protocol)]
        peers = [s for s in peers if s.server != TORCHGATE]
        rated = [(self.median(s.key, "requests_per_s") or 0.0, s.server) for s in peers]
        return max(rated)[1] if rated else None

    def ratio_pairs(self) -> dict[str, tuple[str, str]]:
        """Each named ratio and the two series it divides."""
        pairs: dict[str, tuple[str, str]] = {}
        for model in self.models:
            for protocol in ("v2", "grpc"):
                ours = Series(model, protocol, TORCHGATE, 0).key
                peers = [
                    s.server
                    for s in self.series
                    if (s.model, s.protocol) == (model, protocol) and s.server != TORCHGATE
                ]
                if model != "cnn":  # the heavy model: torchgate against the better peer only
                    best = self.best_peer(model, protocol)
                    peers = [best] if best is not None else []
                for peer in peers:
                    suffix = "" if model == "cnn" else " (the better peer)"
                    name = f"{model} {PROTOCOLS[protocol]}: torchgate / {peer}{suffix}"
                    pairs[name] = (ours, Series(model, protocol, peer, 0).key)
            if model == "cnn":
                v1 = Series(model, "v1", TORCHGATE, 0).key
                if v1 in self.results:
                    name = f"{model}: torchgate v2 REST / torchgate v1 raw PNG"
                    pairs[name] = (Series(model, "v2", TORCHGATE, 0).key, v1)
        return pairs

    def ratios(self) -> dict[str, float | None]:
        return {name: self.ratio(*pair) for name, pair in self.ratio_pairs().items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "series": [
                {
                    "key": s.key,
                    "model": s.model,
                    "protocol": s.protocol,
                    "server": s.server,
                    "concurrency": s.concurrency,
                    "median": {name: self.median(s.key, name) for name in FIGURES},
                    "rounds": [figures(result) for result in self.results.get(s.key, [])],
                }
                for s in self.series
            ],
            "ratios": self.ratios(),
        }
