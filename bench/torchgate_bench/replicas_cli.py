"""``python -m torchgate_bench bench-replicas``: the command, its report and its results record
(the measuring is in replicas.py)."""

from __future__ import annotations

import json
import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import httpx
import typer

from torchgate_bench.replicas import (
    MODEL,
    RATIO_TARGET,
    REPLICAS,
    ReplicasConfig,
    ReplicasResult,
    run_replicas,
)
from torchgate_bench.results import DEFAULT_RESULTS_DIR, Record, ResultsDir, ResultsRun


def format_report(result: ReplicasResult) -> str:
    config = result.config
    start, end = result.load_average_start[0], result.load_average_end[0]
    lines = [
        f"nproc {result.nproc} · load average (1 min) {start:.2f} at start, {end:.2f} at end"
        f" · {MODEL} on cpu, 1 torch thread per process",
        f"admin fan-out to {REPLICAS} processes: {config.admin_calls} sequential calls, "
        f"reinitialize/reload in turn, call i to replica i % {REPLICAS}",
        "  store          calls  converged    p50 ms    p99 ms    max ms",
    ]
    for row in result.fan_out:
        lines.append(
            f"  {row.store:<13} {row.calls:6d} {row.converged:6d}/{row.calls:<3d}"
            f" {row.p50_ms:9.1f} {row.p99_ms:9.1f} {row.max_ms:9.1f}"
        )
        lines += [f"    {failure}" for failure in row.failures[:5]]
    lines += [
        f"inference, {MODEL} predict: redis store vs sqlite:// (nothing shared), "
        f"{config.concurrency} connections, {config.duration_s:g} s per turn, {result.load_tool}",
        "  round   redis req/s   sqlite:// req/s   ratio   errors",
    ]
    for number, r in enumerate(result.rounds, 1):
        lines.append(
            f"  {number:5d} {r.with_store_rps:13.1f} {r.without_store_rps:17.1f}"
            f" {r.ratio:7.3f} {r.errors:8d}"
        )
    verdict = "met" if result.median_ratio >= RATIO_TARGET else "not met"
    lines.append(f"  median ratio {result.median_ratio:.3f} (target >= {RATIO_TARGET}: {verdict})")
    return "\n".join(lines)


@contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """A SIGTERM (a CI timeout, ``kill``) unwinds like Ctrl-C, so every child is stopped."""

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def bench_replicas(
    admin_calls: Annotated[int, typer.Option(min=1, help="Admin changes per store.")] = 40,
    concurrency: Annotated[int, typer.Option(min=1, help="Connections for predict.")] = 32,
    duration: Annotated[float, typer.Option(min=0.5, help="Seconds per throughput turn.")] = 5.0,
    rounds: Annotated[int, typer.Option(min=1, help="Turns per server (A, B, A, B...).")] = 3,
    warmup: Annotated[float, typer.Option(min=0, help="Unmeasured seconds per server.")] = 1.0,
    checkpoint_dir: Annotated[Path, typer.Option(help="Trained cnn checkpoint.")] = Path("models"),
    ready_timeout: Annotated[float, typer.Option(help="Seconds to wait for each server.")] = 120.0,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON document instead of the report.")
    ] = False,
    output: Annotated[Path | None, typer.Option(help="Also write the JSON document here.")] = None,
    results_dir: ResultsDir = DEFAULT_RESULTS_DIR,
) -> None:
    """Admin fan-out latency across 3 replicas (Redis, SQLite file) and the store's cost."""
    logging.basicConfig(level="INFO", format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per admin call otherwise
    config = ReplicasConfig(
        admin_calls, concurrency, duration, rounds, warmup, checkpoint_dir, ready_timeout
    )
    results = ResultsRun(results_dir)
    try:
        with _sigterm_unwinds():
            result = run_replicas(config)
    except (RuntimeError, TimeoutError, OSError, httpx.HTTPError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    path = results.write(replicas_record(result))
    document = json.dumps(result.to_dict(), indent=2)
    if output is not None:
        output.write_text(document + "\n")
    typer.echo(document if json_output else format_report(result))
    typer.echo(f"results: {path}", err=True)
    if not all(row.all_converged for row in result.fan_out):
        raise typer.Exit(1)


def replicas_record(result: ReplicasResult) -> Record:
    """The fan-out table per store, the store's cost on inference as the ratio, every round."""
    config = result.config
    return Record(
        kind="replicas",
        title=f"{MODEL} on {REPLICAS} replicas: admin fan-out and what the shared store costs",
        columns=["store", "admin calls", "converged", "p50 ms", "p99 ms", "max ms"],
        rows=[
            [row.store, row.calls, row.converged, row.p50_ms, row.p99_ms, row.max_ms]
            for row in result.fan_out
        ],
        ratios={"redis store / sqlite:// (median of rounds)": result.median_ratio},
        rounds=[
            {
                "round": index,
                "redis req/s": r.with_store_rps,
                "sqlite:// req/s": r.without_store_rps,
                "ratio": r.ratio,
                "errors": r.errors,
            }
            for index, r in enumerate(result.rounds, 1)
        ],
        notes=[
            f"{config.admin_calls} sequential admin calls per store (reinitialize/reload in "
            f"turn, call i to replica i % {REPLICAS}); {MODEL} on cpu, 1 torch thread each",
            f"inference: {config.concurrency} connections, {config.duration_s:g} s per turn, "
            f"{config.rounds} rounds, load: {result.load_tool}; target ratio >= {RATIO_TARGET}",
            *[f"{row.store}: {failure}" for row in result.fan_out for failure in row.failures[:5]],
        ],
    )
