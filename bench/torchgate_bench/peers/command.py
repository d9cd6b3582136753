"""``bench --peer``: from the command's options to a peer run, its record and its report.

Two families of peers: TorchServe, LitServe and a plain FastAPI app take the cnn's PNG on
torchgate's v1 path (``run.py``); Triton and KServe take the same Open Inference Protocol
request as torchgate's v2 REST and gRPC (``v2_run.py``). A list naming both runs each in turn,
each writing its own record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from torchgate_bench.config import BenchConfig
from torchgate_bench.peers.requirements import PEERS, V2_PEERS, missing_v2_requirement
from torchgate_bench.results import ResultsRun, command_line

PeerNames = Annotated[
    str | None,
    typer.Option(
        help="Instead: the cnn against peer servers in alternating rounds (c=32 unless "
        f"--concurrency; --duration per side and round), a comma list of {', '.join(PEERS)} "
        f"(v1, raw PNG) and {', '.join(V2_PEERS)} (v2 REST + gRPC, and resnet101), or all; "
        "see torchgate_bench/peers."
    ),
]


@dataclass(frozen=True)
class PeerOptions:
    """The --peer options of the command line that are not the bench's own."""

    rounds: int | None
    grid: str
    peers_python: Path
    v2_pythons: dict[str, Path]
    prepass: bool
    json_out: Path | None
    json_output: bool


def split_peers(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``"triton, kserve"`` -> the v1 family's peers and the v2 family's, each in its order."""
    names = {name.strip().lower() for name in text.split(",") if name.strip()}
    if "all" in names:
        return PEERS, V2_PEERS
    unknown = sorted(names - {*PEERS, *V2_PEERS})
    if unknown or not names:
        choices = ", ".join((*PEERS, *V2_PEERS, "all"))
        raise typer.BadParameter(f"choose from {choices}; got {text!r}", param_hint="--peer")
    return tuple(p for p in PEERS if p in names), tuple(p for p in V2_PEERS if p in names)


def run_peer_families(
    config: BenchConfig, text: str, options: PeerOptions, results: ResultsRun
) -> None:
    """The v1 family first (if named), then the v2 one, each with its own results record."""
    from torchgate_bench.peers.v2_command import run_v2_command

    v1, v2 = split_peers(text)
    for peer in v2:  # before a long v1 run, not after it
        problem = missing_v2_requirement(peer, options.v2_pythons[peer])
        if problem:
            typer.echo(f"error: {problem}", err=True)
            raise typer.Exit(1)
    if v1:
        run_peers_command(
            config,
            v1,
            options.rounds or 5,
            options.grid,
            options.peers_python,
            options.json_out,
            options.json_output,
            results,
        )
    if v2:
        json_out = options.json_out
        if v1 and json_out is not None:
            json_out = json_out.with_name(f"{json_out.stem}-v2{json_out.suffix}")
        run_v2_command(
            config,
            v2,
            options.rounds,
            options.v2_pythons,
            options.prepass,
            json_out,
            options.json_output,
            ResultsRun(results.results_dir) if v1 else results,
        )


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
