"""``python -m torchgate_bench bench-replicas``: what the shared control store costs, on real
processes.

Two figures: how long an admin change takes to reach three replicas (through Redis, and
through one SQLite file as containers on one host would share it), and whether configuring
a store slows inference (it should not: the store is off the request path). Throughput is
compared in alternating rounds with both servers up, so the machine's drift cancels out.
"""

from __future__ import annotations

import logging
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from torchgate_bench.drivers import choose_driver
from torchgate_bench.images import garment_png
from torchgate_bench.latency import percentile
from torchgate_bench.load import LoadPlan, LoadResult, LoadTarget
from torchgate_bench.redis_server import throwaway_redis
from torchgate_bench.server import ServerProcess, process_tree

logger = logging.getLogger(__name__)

MODEL = "cnn"
REPLICAS = 3
RATIO_TARGET = 0.95


@dataclass(frozen=True)
class ReplicasConfig:
    admin_calls: int = 40
    concurrency: int = 32
    duration_s: float = 5.0
    rounds: int = 3
    warmup_s: float = 1.0
    checkpoint_dir: Path = Path("models")
    ready_timeout_s: float = 120.0


@dataclass
class FanOutRow:
    """Admin calls to REPLICAS processes sharing one store; ``converged`` counts the calls
    answered 200, converged, with every replica listed."""

    store: str
    calls: int
    converged: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    failures: list[str] = field(default_factory=list)

    @property
    def all_converged(self) -> bool:
        return self.converged == self.calls


@dataclass(frozen=True)
class ThroughputRound:
    """Answered predictions per second with a Redis store configured, and with an in-memory
    one (nothing shared), in one round."""

    with_store_rps: float
    without_store_rps: float
    errors: int

    @property
    def ratio(self) -> float:
        return self.with_store_rps / self.without_store_rps if self.without_store_rps else 0.0


@dataclass
class ReplicasResult:
    config: ReplicasConfig
    nproc: int
    load_average_start: tuple[float, ...]
    load_average_end: tuple[float, ...] = ()
    load_tool: str = ""
    fan_out: list[FanOutRow] = field(default_factory=list)
    rounds: list[ThroughputRound] = field(default_factory=list)
    child_pids: list[int] = field(default_factory=list)  # every process it started

    @property
    def median_ratio(self) -> float:
        return statistics.median(r.ratio for r in self.rounds) if self.rounds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": {**asdict(self.config), "checkpoint_dir": str(self.config.checkpoint_dir)},
            "nproc": self.nproc,
            "load_average_start": list(self.load_average_start),
            "load_average_end": list(self.load_average_end),
            "load_tool": self.load_tool,
            "fan_out": [
                {**asdict(row), "all_converged": row.all_converged} for row in self.fan_out
            ],
            "throughput": {
                "rounds": [{**asdict(r), "ratio": r.ratio} for r in self.rounds],
                "median_ratio": self.median_ratio,
                "target": RATIO_TARGET,
                "met": self.median_ratio >= RATIO_TARGET,
            },
            "child_pids": self.child_pids,
        }


def _stop_all(servers: list[ServerProcess]) -> None:
    with ThreadPoolExecutor(len(servers)) as pool:
        list(pool.map(ServerProcess.stop, servers))


@contextmanager
def _serving(
    state_urls: list[str],
    env: dict[str, str],
    config: ReplicasConfig,
    folder: Path,
    pids: list[int],
) -> Iterator[list[ServerProcess]]:
    """One server per store URL, started and stopped side by side (each imports torch on its
    own core); all of them are stopped on the way out, whatever happened."""
    servers = [
        ServerProcess(
            {**env, "TORCHGATE_STATE_URL": url},
            ready_timeout_s=config.ready_timeout_s,
            log_dir=folder,
        )
        for url in state_urls
    ]
    starter = ThreadPoolExecutor(len(servers))
    try:
        for server in starter.map(ServerProcess.__enter__, servers):
            pids.extend(process_tree(server.pid))
        yield servers
    finally:
        _stop_all(servers)  # on an interrupt, this also makes the pending starts fail fast
        starter.shutdown(wait=True)
        _stop_all(servers)  # any that a start spawned meanwhile


def _admin_call(client: httpx.Client, server: ServerProcess, index: int) -> httpx.Response:
    url = f"{server.base_url}/admin/models/{MODEL}"
    if index % 2:
        return client.post(f"{url}/reload")
    return client.post(f"{url}/reinitialize", json={"seed": index})


def _failure(response: httpx.Response) -> str | None:
    """Why an admin answer is not a change every replica took, or None when it is."""
    if response.status_code != 200:
        return f"status {response.status_code}: {response.text[:200]}"
    body = response.json()
    if not body["converged"] or len(body["processes"]) != REPLICAS:
        return f"converged={body['converged']} with {len(body['processes'])} processes"
    return None


def _wait_for_replicas(client: httpx.Client, server: ServerProcess, timeout_s: float) -> None:
    """Ready is per process; a reload that lists every replica means all take part."""
    deadline = time.monotonic() + timeout_s
    while (failure := _failure(_admin_call(client, server, 1))) is not None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the replicas never all answered a reload: {failure}")
        time.sleep(0.2)


def measure_fan_out(
    store: str,
    state_url: str,
    env: dict[str, str],
    config: ReplicasConfig,
    folder: Path,
    pids: list[int],
) -> FanOutRow:
    """Sequential admin calls, alternating reinitialize and reload, each to replica i % 3."""
    headers = {"Authorization": f"Bearer {env['TORCHGATE_ADMIN_TOKEN']}"}
    latencies: list[float] = []
    failures: list[str] = []
    with (
        _serving([state_url] * REPLICAS, env, config, folder, pids) as servers,
        httpx.Client(headers=headers, timeout=120) as client,
    ):
        _wait_for_replicas(client, servers[0], config.ready_timeout_s)
        logger.info("%s: %d replicas up; %d admin calls", store, REPLICAS, config.admin_calls)
        for index in range(config.admin_calls):
            started = time.perf_counter()
            response = _admin_call(client, servers[index % REPLICAS], index)
            latencies.append((time.perf_counter() - started) * 1000)
            if (failure := _failure(response)) is not None:
                failures.append(f"call {index}: {failure}")
    return FanOutRow(
        store=store,
        calls=config.admin_calls,
        converged=config.admin_calls - len(failures),
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        max_ms=max(latencies, default=float("nan")),
        failures=failures,
    )


def _answered_per_s(result: LoadResult) -> float:
    return result.ok_requests / result.duration_s if result.duration_s > 0 else 0.0


def measure_throughput(
    redis_url: str, env: dict[str, str], config: ReplicasConfig, folder: Path, pids: list[int]
) -> tuple[str, list[ThroughputRound]]:
    """cnn predict on two single servers, with and without a shared store, in turns."""
    tool, driver = choose_driver("auto", folder)
    body = folder / "garment.png"
    body.write_bytes(garment_png().data)
    rounds: list[ThroughputRound] = []
    with _serving([redis_url, "sqlite://"], env, config, folder, pids) as servers:
        targets = [
            LoadTarget(f"{s.base_url}/v1/models/{MODEL}/predict", "POST", body, "image/png", 1)
            for s in servers
        ]
        if config.warmup_s > 0:
            for target in targets:
                driver(target, LoadPlan(config.concurrency, config.warmup_s))
        plan = LoadPlan(config.concurrency, config.duration_s)
        logger.info("throughput: %d rounds of %g s per server", config.rounds, config.duration_s)
        for _ in range(config.rounds):
            first, second = (driver(target, plan) for target in targets)
            rounds.append(
                ThroughputRound(
                    _answered_per_s(first), _answered_per_s(second), first.errors + second.errors
                )
            )
    return tool, rounds


def run_replicas(config: ReplicasConfig) -> ReplicasResult:
    """Redis fan-out, SQLite-file fan-out, then throughput; every child stopped on the way out."""
    result = ReplicasResult(config, len(os.sched_getaffinity(0)), os.getloadavg())
    env = {
        **os.environ,
        "TORCHGATE_MODELS": MODEL,
        "TORCHGATE_CHECKPOINT_DIR": str(config.checkpoint_dir.resolve()),
        "TORCHGATE_DEVICE": "cpu",
        "TORCHGATE_TORCH_THREADS": "1",
        "TORCHGATE_WORKERS": "1",
        "TORCHGATE_ADMIN_TOKEN": secrets.token_urlsafe(32),
        "TORCHGATE_ACCESS_LOG": "false",
    }
    pids = result.child_pids
    with tempfile.TemporaryDirectory(prefix="torchgate-bench-replicas-") as scratch:
        folder = Path(scratch)
        with throwaway_redis(folder, pids) as redis:
            sqlite_file = f"sqlite:///{folder / 'state.sqlite3'}"
            for store, url in (("redis", f"{redis}/0"), ("sqlite file", sqlite_file)):
                result.fan_out.append(measure_fan_out(store, url, env, config, folder, pids))
            result.load_tool, result.rounds = measure_throughput(
                f"{redis}/1", env, config, folder, pids
            )
    result.load_average_end = os.getloadavg()
    return result
