"""The HTTP floor (``python -m app bench-http``), uvicorn+httptools against granian, in one run.

For each worker count, one server of each kind is up at once, serving the cnn; wrk drives
/healthz and the cnn (one 28x28 PNG as the raw body) at the same concurrency, in rounds that
alternate the servers (reversing their order every round), so the machine's drift cancels out
of the ratios. Everything a reader needs to judge the figures is printed with them.
"""

from __future__ import annotations

import logging
import os
import secrets
import statistics
import tempfile
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the CLI imports this module for every command: the bench's imports wait
    from app.bench.load import LoadResult, LoadTarget
    from app.bench.runner import Driver
    from app.bench.server import ServerProcess

logger = logging.getLogger(__name__)

MODEL = "cnn"
SERVERS = ("uvicorn", "granian")
TARGETS = ("healthz", "cnn")
# As for the README's other throughput figures; --env TORCHGATE_ACCESS_LOG=true puts it back.
ACCESS_LOG_OFF = {"TORCHGATE_ACCESS_LOG": "false"}


@dataclass(frozen=True)
class HttpBenchConfig:
    """Defaults: about 3 minutes on a quiet 2-core machine (4 minutes on a loaded one)."""

    servers: tuple[str, ...] = SERVERS
    workers: tuple[int, ...] = (1, 2)
    concurrency: int = 32
    duration_s: float = 5.0  # each slice: one target on one server
    rounds: int = 3
    warmup_s: float = 2.0
    checkpoint_dir: Path = Path("models")
    extra_env: dict[str, str] = field(default_factory=dict)
    load_tool: str = "wrk"
    ready_timeout_s: float = 180.0


@dataclass(frozen=True)
class Slice:
    """One measured slice: a target on one server in one round."""

    workers: int
    round: int
    server: str
    target: str
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int


@dataclass
class HttpBenchResult:
    config: HttpBenchConfig
    machine: dict[str, Any]
    versions: dict[str, str | None]
    load_average_end: list[float]
    input_bytes: int
    slices: list[Slice] = field(default_factory=list)

    def median(self, workers: int, server: str, target: str, figure: str) -> float:
        values = [
            getattr(s, figure)
            for s in self.slices
            if (s.workers, s.server, s.target) == (workers, server, target)
        ]
        return statistics.median(values) if values else float("nan")

    def to_dict(self) -> dict[str, Any]:
        medians = {
            f"workers={w}": {
                server: {
                    target: {
                        figure: self.median(w, server, target, figure)
                        for figure in ("requests_per_s", "p50_ms", "p99_ms")
                    }
                    for target in TARGETS
                }
                for server in self.config.servers
            }
            for w in self.config.workers
        }
        return {
            "config": {**asdict(self.config), "checkpoint_dir": str(self.config.checkpoint_dir)},
            "machine": self.machine,
            "versions": self.versions,
            "load_average_end": self.load_average_end,
            "input_bytes": self.input_bytes,
            "slices": [asdict(s) for s in self.slices],
            "medians": medians,
        }


def _versions(tool: str) -> dict[str, str | None]:
    from app.bench.machine import wrk_version
    from app.bench.wrk import find_wrk

    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    found = {name: version(name) for name in ("uvicorn", "httptools", "granian", "uvloop")}
    return {**found, "load_tool": wrk_version(find_wrk()) if tool == "wrk" else tool}


def _server_env(config: HttpBenchConfig) -> dict[str, str]:
    return {
        **os.environ,
        "TORCHGATE_MODELS": MODEL,
        "TORCHGATE_CHECKPOINT_DIR": str(config.checkpoint_dir.resolve()),
        "TORCHGATE_DOWNLOAD_WEIGHTS": "false",
        "TORCHGATE_ADMIN_TOKEN": secrets.token_urlsafe(16),
        **ACCESS_LOG_OFF,
        **config.extra_env,
    }


def _start(stack: ExitStack, config: HttpBenchConfig, server: str, workers: int) -> ServerProcess:
    """A ready server of kind ``server`` (every worker loaded: a run of 200s from /readyz)."""
    import httpx

    from app.bench.server import ServerProcess

    process = ServerProcess(
        _server_env(config),
        ["--server", server, "--workers", str(workers)],
        config.ready_timeout_s,
        confirmations=1 if workers == 1 else 4 * workers,
    )
    stack.enter_context(process)
    info = httpx.get(f"{process.base_url}/v1/models/{MODEL}", timeout=30).json()
    if info.get("status") != "ready":
        raise RuntimeError(f"{MODEL} is {info.get('status')} under {server}: {info.get('reason')}")
    logger.info("%s (workers %d) ready in %.1f s", server, workers, process.cold_start_s)
    return process


def _targets(process: ServerProcess, body: Path) -> dict[str, LoadTarget]:
    from app.bench.load import LoadTarget

    predict = f"{process.base_url}/v1/models/{MODEL}/predict"
    return {
        "healthz": LoadTarget(f"{process.base_url}/healthz"),
        "cnn": LoadTarget(predict, "POST", body, "image/png", images_per_request=1),
    }


def _slice(workers: int, index: int, server: str, target: str, result: LoadResult) -> Slice:
    return Slice(
        workers,
        index,
        server,
        target,
        result.requests_per_s,
        result.latency.p50_ms,
        result.latency.p99_ms,
        result.errors,
    )


def _measure_group(
    config: HttpBenchConfig, workers: int, body: Path, driver: Driver
) -> list[Slice]:
    """Every server with ``workers`` workers up at once; warm-up, then alternating rounds."""
    from app.bench.load import LoadPlan

    slices: list[Slice] = []
    with ExitStack() as stack:
        targets = {
            server: _targets(_start(stack, config, server, workers), body)
            for server in config.servers
        }
        for server in config.servers:
            for target in TARGETS:
                if config.warmup_s > 0:
                    driver(targets[server][target], LoadPlan(config.concurrency, config.warmup_s))
        plan = LoadPlan(config.concurrency, config.duration_s)
        for index in range(1, config.rounds + 1):
            order = config.servers if index % 2 else tuple(reversed(config.servers))
            for target in TARGETS:
                for server in order:
                    result = driver(targets[server][target], plan)
                    slices.append(_slice(workers, index, server, target, result))
                    logger.info(
                        "workers %d round %d %s %s: %.0f req/s",
                        workers,
                        index,
                        server,
                        target,
                        result.requests_per_s,
                    )
    return slices


def run_http_bench(config: HttpBenchConfig) -> HttpBenchResult:
    """Each worker count in turn; the servers of one count measured side by side."""
    from app.bench.images import garment_png
    from app.bench.machine import describe_machine
    from app.bench.payload import raw_body, write_body
    from app.bench.runner import choose_driver

    upload = garment_png()
    with tempfile.TemporaryDirectory(prefix="torchgate-bench-http-") as scratch:
        workdir = Path(scratch)
        body = write_body(raw_body(upload), workdir / "body.png")
        tool, driver = choose_driver(config.load_tool, workdir)
        result = HttpBenchResult(
            config, describe_machine(), _versions(tool), [], input_bytes=len(upload.data)
        )
        for workers in config.workers:
            result.slices += _measure_group(config, workers, body, driver)
    result.load_average_end = [round(load, 2) for load in os.getloadavg()]
    return result
