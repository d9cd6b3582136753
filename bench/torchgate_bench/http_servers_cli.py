"""``python -m app bench-http``: the command and its report (the measuring is in
app/bench/http_servers.py)."""

from __future__ import annotations

import json
import logging
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from app.bench.cli import _parse_env
from app.bench.http_servers import (
    ACCESS_LOG_OFF,
    MODEL,
    SERVERS,
    TARGETS,
    HttpBenchConfig,
    HttpBenchResult,
    run_http_bench,
)


def _env_text(env: dict[str, str]) -> str:
    return " ".join(f"{key}={value}" for key, value in env.items())


def _ratio(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:.2f}x" if denominator else "n/a"


def format_report(result: HttpBenchResult) -> str:
    """Per-slice figures, medians, and the ratios that decide the default server."""
    config, machine, versions = result.config, result.machine, result.versions
    lines = [
        f"HTTP servers, {MODEL} at c={config.concurrency}: one {result.input_bytes}-byte 28x28 "
        f"PNG as the raw body; /healthz at c={config.concurrency}",
        f"uvicorn {versions['uvicorn']} + httptools {versions['httptools']} vs granian "
        f"{versions['granian']} (uvloop {versions['uvloop']}) · load: {versions['load_tool']}",
        f"nproc {machine['nproc']} · load average {machine['load_average']} at start, "
        f"{result.load_average_end} at end · {config.rounds} alternating rounds of "
        f"{config.duration_s:g} s per slice",
        f"server environment: {_env_text({**ACCESS_LOG_OFF, **config.extra_env})}",
        "",
        f"{'workers':>7} {'round':>5} {'server':<8} {'target':<8} {'req/s':>9} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'errors':>6}",
    ]
    for s in result.slices:
        lines.append(
            f"{s.workers:>7} {s.round:>5} {s.server:<8} {s.target:<8} {s.requests_per_s:>9,.0f} "
            f"{s.p50_ms:>7.2f} {s.p99_ms:>7.2f} {s.errors:>6}"
        )
    lines += [
        "",
        "medians",
        f"{'workers':>7} {'server':<8} {'healthz/s':>10} {'cnn/s':>9} {'cnn p99':>8} "
        f"{'cnn/healthz':>11}",
    ]
    for workers in config.workers:
        for server in config.servers:
            healthz = result.median(workers, server, "healthz", "requests_per_s")
            cnn = result.median(workers, server, "cnn", "requests_per_s")
            p99 = result.median(workers, server, "cnn", "p99_ms")
            lines.append(
                f"{workers:>7} {server:<8} {healthz:>10,.0f} {cnn:>9,.0f} {p99:>8.2f} "
                f"{_ratio(cnn, healthz):>11}"
            )
    if set(SERVERS) <= set(config.servers):
        lines += ["", "granian / uvicorn (medians of the alternating rounds)"]
        for workers in config.workers:
            figures = [
                f"{target} "
                + _ratio(
                    result.median(workers, "granian", target, "requests_per_s"),
                    result.median(workers, "uvicorn", target, "requests_per_s"),
                )
                for target in TARGETS
            ]
            lines.append(f"  workers {workers}: " + " · ".join(figures))
    errors = sum(s.errors for s in result.slices)
    if errors:
        lines.append(f"\n{errors} requests failed (socket errors or non-2xx answers)")
    return "\n".join(lines)


def _servers(value: str) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(item.strip() for item in value.split(",") if item.strip()))
    if not chosen or not set(chosen) <= set(SERVERS):
        raise typer.BadParameter(f"choose from {', '.join(SERVERS)}", param_hint="--servers")
    return chosen


def _worker_counts(value: str) -> tuple[int, ...]:
    items = [item.strip() for item in value.split(",") if item.strip()]
    if not items or not all(item.isdigit() and int(item) >= 1 for item in items):
        raise typer.BadParameter("positive whole numbers, e.g. 1,2", param_hint="--workers")
    return tuple(dict.fromkeys(int(item) for item in items))


def bench_http(
    servers: Annotated[str, typer.Option(help="Comma-separated: uvicorn, granian.")] = ",".join(
        SERVERS
    ),
    workers: Annotated[str, typer.Option(help="Comma-separated worker counts.")] = "1,2",
    concurrency: Annotated[int, typer.Option(min=1, help="Connections (wrk).")] = 32,
    duration: Annotated[float, typer.Option(min=1, help="Seconds per measured slice.")] = 5.0,
    rounds: Annotated[int, typer.Option(min=1, help="Alternating rounds.")] = 3,
    warmup: Annotated[float, typer.Option(min=0, help="Unmeasured seconds per target.")] = 2.0,
    checkpoint_dir: Annotated[Path, typer.Option(help="Trained cnn checkpoint.")] = Path("models"),
    env: Annotated[
        list[str] | None, typer.Option(help="Server environment KEY=VALUE (repeatable).")
    ] = None,
    load_tool: Annotated[str, typer.Option(help="wrk, or httpx where wrk is missing.")] = "wrk",
    ready_timeout: Annotated[float, typer.Option(help="Seconds to wait for each server.")] = 180.0,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON document instead of the report.")
    ] = False,
) -> None:
    """/healthz and the cnn at c=32 under uvicorn and granian, in alternating rounds."""
    if load_tool not in ("wrk", "httpx"):
        raise typer.BadParameter("choose wrk or httpx", param_hint="--load-tool")
    config = HttpBenchConfig(
        servers=_servers(servers),
        workers=_worker_counts(workers),
        concurrency=concurrency,
        duration_s=duration,
        rounds=rounds,
        warmup_s=warmup,
        checkpoint_dir=checkpoint_dir,
        extra_env=_parse_env(env or []),
        load_tool=load_tool,
        ready_timeout_s=ready_timeout,
    )
    logging.basicConfig(level="INFO", format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # ``timeout`` stops a run with SIGTERM: unwind, so every server this run started is stopped
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    import httpx

    try:
        result = run_http_bench(config)
    except (RuntimeError, TimeoutError, OSError, httpx.HTTPError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps(result.to_dict(), indent=2) if json_output else format_report(result))
