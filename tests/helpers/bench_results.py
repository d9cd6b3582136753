"""A ``bench`` result built by hand, for the tests of what the bench makes of one (its JSON
document, tables and results record)."""

from __future__ import annotations

from torchgate_bench.config import BenchConfig
from torchgate_bench.latency import LatencySummary
from torchgate_bench.load import LoadResult
from torchgate_bench.promdiff import ServerStats
from torchgate_bench.raw import RawResult
from torchgate_bench.runner import BenchResult, ScenarioResult

MACHINE = {"nproc": 2, "load_average": [1.0, 1.0, 1.0], "torch_version": "2.x", "torch_threads": 2}


def load_result(requests: int, errors: int = 0) -> LoadResult:
    """``requests`` over 2 s, one image each, p50/p90/p99 10/20/30 ms."""
    return LoadResult("wrk", requests, errors, 2.0, LatencySummary(10, 20, 30, 12, 40), 1)


def scenario_result(name: str, requests: int, healthz: LoadResult | None = None) -> ScenarioResult:
    stats = ServerStats(10, 40, 4.0, 50.0, 5.0, {"200": requests})
    return ScenarioResult(
        name, {}, 3.5, 512 * 1024 * 1024, 1, 3.0, load_result(requests), stats, healthz
    )


def bench_result() -> BenchResult:
    """alexnet with batching on and off, /healthz beside the first, raw at 100 images/s."""
    raw = RawResult(
        "alexnet", "2.x", 2, 2.0, "script", 1, 16, 125.0, 100.0,
        trials=[{"variant": "script", "threads": 1, "batch_size": 16, "images_per_s": 125.0}],
    )  # fmt: skip
    scenarios = [
        scenario_result("batching on", 160, healthz=load_result(8000)),
        scenario_result("batching off", 80),
    ]
    return BenchResult(
        BenchConfig("alexnet", batching="both"), "wrk", 4470, "photo.jpg", raw, scenarios
    )
