"""``bench --peer``: from the command's options to a peer run, its record and its report."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from torchgate_bench.config import BenchConfig
from torchgate_bench.results import ResultsRun, command_line


def run_peers_command(
    config: BenchConfig,
    peers: tuple[str, ...],
    rounds: int,
    grid: str,
    python: Path,
    json_out: Path | None,
    json_output: bool,
    results: ResultsRun,
) -> None:
    """Check the grid before anything starts, run, then write the record and print."""
    from rich.console import Console

    from torchgate_bench.peers.configs import parse_grid
    from torchgate_bench.peers.records import peers_record
    from torchgate_bench.peers.report import render
    from torchgate_bench.peers.run import PeersOptions, run_peers

    try:
        parse_grid(grid, cores=1)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--peer-grid") from exc
    options = PeersOptions(
        peers=peers,
        concurrency=config.concurrency,
        rounds=rounds,
        duration_s=config.duration_s,
        warmup_s=config.warmup_s,
        grid=grid,
        peers_python=python,
        checkpoint_dir=config.checkpoint_dir,
        weights_dir=config.weights_dir,
        extra_env=config.extra_env,
        serve_args=config.serve_args,
        load_tool=config.load_tool,
        ready_timeout_s=config.ready_timeout_s,
        log_dir=config.log_dir,
    )
    try:
        result = run_peers(options)
    except (RuntimeError, TimeoutError, OSError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    path = results.write(peers_record(result))
    command = command_line()  # as typed: python -m torchgate_bench bench --peer ...
    document = {"command": command, **result.to_document()}
    if json_out is not None:
        json_out.write_text(json.dumps(document, indent=2) + "\n")
    if json_output:
        typer.echo(json.dumps(document, indent=2))
    else:
        render(result, Console(width=200), command)
    typer.echo(f"results: {path}", err=True)
