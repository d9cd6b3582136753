"""``python -m torchgate_bench soak``: bounded closed-loop load for minutes, watching memory grow.

A real server on loopback answers C clients that each send their next prediction as soon as
the last one is answered. Every interval the resident memory of the server and all its
processes is sampled, plus its GPU memory when ``nvidia-smi`` is there (the allocator's own
figures are not visible from outside the process). Growth compares the first sample after
the warm-up with the last; a leak-free server stays under about 5 %.
"""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import httpx
import typer

from torchgate_bench.images import garment_png
from torchgate_bench.results import DEFAULT_RESULTS_DIR, Record, ResultsDir, ResultsRun
from torchgate_bench.server import ServerProcess, process_tree

GROWTH_GOAL = 0.05
_MIB = 1024 * 1024


@dataclass(frozen=True)
class SoakConfig:
    model: str = "cnn"
    duration_s: float = 600.0
    warmup_s: float = 60.0
    interval_s: float = 10.0
    concurrency: int = 4
    timeout_s: float = 30.0
    checkpoint_dir: Path = Path("models")
    extra_env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Sample:
    elapsed_s: float
    rss_bytes: int
    processes: int
    gpu_bytes: int | None  # None: no nvidia-smi, or the server holds no GPU memory
    requests: int


@dataclass
class SoakResult:
    config: SoakConfig
    samples: list[Sample] = field(default_factory=list)
    requests: int = 0
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def _baseline(self) -> Sample | None:
        after = [s for s in self.samples if s.elapsed_s >= self.config.warmup_s]
        return after[0] if len(after) >= 2 else None

    def rss_growth(self) -> float:
        """(last - first after warm-up) / first, as a fraction; NaN with too few samples."""
        first = self._baseline()
        if first is None or first.rss_bytes == 0:
            return math.nan
        return (self.samples[-1].rss_bytes - first.rss_bytes) / first.rss_bytes

    def gpu_growth(self) -> float | None:
        first = self._baseline()
        last = self.samples[-1] if self.samples else None
        if first is None or last is None or not first.gpu_bytes or last.gpu_bytes is None:
            return None
        return (last.gpu_bytes - first.gpu_bytes) / first.gpu_bytes


def gpu_memory_bytes(pids: list[int]) -> int | None:
    """GPU memory that nvidia-smi reports for these processes; None without nvidia-smi."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        completed = subprocess.run(
            [
                "nvidia-smi",
                "--query-compute-apps=pid,used_memory",
                "--format=csv,noheader,nounits",
            ],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    wanted, total, seen = set(pids), 0, False
    for line in completed.stdout.splitlines():
        pid, _, used = line.partition(",")
        if pid.strip().isdigit() and int(pid) in wanted and used.strip().isdigit():
            total += int(used) * _MIB
            seen = True
    return total if seen else None


async def _load_and_sample(server: ServerProcess, result: SoakResult) -> None:
    config = result.config
    url = f"{server.base_url}/v1/models/{config.model}/predict"
    body = garment_png().data
    headers = {"Content-Type": "image/png"}
    started = time.perf_counter()
    end = started + config.duration_s
    limits = httpx.Limits(
        max_connections=config.concurrency, max_keepalive_connections=config.concurrency
    )

    async def client_loop(client: httpx.AsyncClient) -> None:
        while time.perf_counter() < end:
            try:
                response = await client.post(url, content=body, headers=headers)
                if response.status_code != 200:
                    result.errors[f"status {response.status_code}"] += 1
            except httpx.TimeoutException:
                result.errors["timeout"] += 1
            except httpx.TransportError:
                result.errors["transport"] += 1
            result.requests += 1

    def sample() -> None:
        pids = process_tree(server.pid)
        rss, count = server.memory()
        result.samples.append(
            Sample(
                time.perf_counter() - started, rss, count, gpu_memory_bytes(pids), result.requests
            )
        )

    async def sampler() -> None:
        while True:
            await asyncio.to_thread(sample)
            remaining = end - time.perf_counter()
            if remaining <= 0:
                return
            await asyncio.sleep(min(config.interval_s, remaining))

    async with httpx.AsyncClient(limits=limits, timeout=config.timeout_s) as client:
        await asyncio.gather(sampler(), *(client_loop(client) for _ in range(config.concurrency)))


def run_soak(config: SoakConfig) -> SoakResult:
    """Start a server with only ``config.model``, load it for the duration, sample memory."""
    env = {
        **os.environ,
        "TORCHGATE_MODELS": config.model,
        "TORCHGATE_CHECKPOINT_DIR": str(config.checkpoint_dir.resolve()),
        "TORCHGATE_ACCESS_LOG": "false",
        **config.extra_env,
    }
    result = SoakResult(config)
    with ServerProcess(env=env) as server:
        asyncio.run(_load_and_sample(server, result))
    return result


def format_report(result: SoakResult) -> str:
    lines = ["elapsed_s  requests   rss_MiB  procs   gpu_MiB"]
    for s in result.samples:
        gpu = f"{s.gpu_bytes / _MIB:9.1f}" if s.gpu_bytes is not None else "        -"
        lines.append(
            f"{s.elapsed_s:9.1f} {s.requests:9d} {s.rss_bytes / _MIB:9.1f} {s.processes:6d} {gpu}"
        )
    growth = result.rss_growth()
    verdict = "ok" if growth < GROWTH_GOAL else "over the 5% goal"
    lines.append(
        f"{result.requests} requests, {result.error_count} errors {dict(result.errors)}; "
        f"RSS growth after {result.config.warmup_s:.0f} s warm-up: {growth:+.2%} ({verdict})"
    )
    gpu_growth = result.gpu_growth()
    lines.append(
        "GPU memory: not sampled (no nvidia-smi, or no GPU memory in use)"
        if gpu_growth is None
        else f"GPU memory growth after warm-up: {gpu_growth:+.2%}"
    )
    return "\n".join(lines)


def soak_record(result: SoakResult) -> Record:
    """Every memory sample as a row; growth after the warm-up as last / first."""
    config, growth, gpu_growth = result.config, result.rss_growth(), result.gpu_growth()
    rows: list[list[object]] = [
        [
            s.elapsed_s,
            s.requests,
            s.rss_bytes / _MIB,
            s.processes,
            None if s.gpu_bytes is None else s.gpu_bytes / _MIB,
        ]
        for s in result.samples
    ]
    return Record(
        kind="soak",
        title=f"{config.model} soak: {config.duration_s / 60:g} min at c={config.concurrency}",
        columns=["elapsed s", "requests", "RSS MiB", "processes", "GPU MiB"],
        rows=rows,
        ratios={
            "RSS last / first after warm-up": 1 + growth,
            "GPU memory last / first after warm-up": None if gpu_growth is None else 1 + gpu_growth,
        },
        notes=[
            f"{result.requests} requests, {result.error_count} errors {dict(result.errors)}",
            f"growth measured from the first sample after {config.warmup_s:g} s of warm-up; "
            f"goal: under {GROWTH_GOAL:.0%}",
        ],
    )


def soak(
    model: Annotated[str, typer.Option(help="Classifier to load and drive.")] = "cnn",
    minutes: Annotated[float, typer.Option(min=0.05, help="Total length of the run.")] = 10.0,
    warmup: Annotated[
        float, typer.Option(min=0, help="Seconds before the growth baseline sample.")
    ] = 60.0,
    interval: Annotated[float, typer.Option(min=0.5, help="Seconds between samples.")] = 10.0,
    concurrency: Annotated[int, typer.Option(min=1, help="Clients in the closed loop.")] = 4,
    checkpoint_dir: Annotated[Path, typer.Option(help="Trained cnn/lstm checkpoints.")] = Path(
        "models"
    ),
    short: Annotated[
        bool, typer.Option("--short", help="20 s in all, 4 s warm-up, a sample every 2 s.")
    ] = False,
    results_dir: ResultsDir = DEFAULT_RESULTS_DIR,
) -> None:
    """Load a real server for minutes and report its memory growth (goal: under 5 %)."""
    config = (
        SoakConfig(model, 20.0, 4.0, 2.0, concurrency, checkpoint_dir=checkpoint_dir)
        if short
        else SoakConfig(model, minutes * 60, warmup, interval, concurrency, 30.0, checkpoint_dir)
    )
    results = ResultsRun(results_dir)
    result = run_soak(config)
    path = results.write(soak_record(result))
    typer.echo(format_report(result))
    typer.echo(f"results: {path}", err=True)
    if result.error_count:
        raise typer.Exit(1)
