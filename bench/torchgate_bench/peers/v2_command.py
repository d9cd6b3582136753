"""``bench --peer triton,kserve``: from the command's options to the Open Inference Protocol
run, its results record and its report; the options only this family has."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from torchgate_bench.config import BenchConfig
from torchgate_bench.peers.requirements import DEFAULT_V2_PYTHON
from torchgate_bench.results import ResultsRun, command_line

DEFAULT_ROUNDS = 3
TritonPython = Annotated[
    Path,
    typer.Option(help="--peer triton: python of PyTriton's venv (../shared/peers/v2/README.md)."),
]
KservePython = Annotated[
    Path, typer.Option(help="--peer kserve: python of KServe's venv (../shared/peers/v2).")
]
Prepass = Annotated[
    bool,
    typer.Option(
        help="--peer triton/kserve: try each peer's grid first (Triton: instances 1-2 x batcher "
        "delay 0.5/2 ms; KServe: workers 1-2) and keep the fastest."
    ),
]
DEFAULT_TRITON_PYTHON = DEFAULT_V2_PYTHON["triton"]
DEFAULT_KSERVE_PYTHON = DEFAULT_V2_PYTHON["kserve"]


def run_v2_command(
    config: BenchConfig,
    peers: tuple[str, ...],
    rounds: int | None,
    pythons: dict[str, Path],
    prepass: bool,
    json_out: Path | None,
    json_output: bool,
    results: ResultsRun,
) -> None:
    """Run, then write the record and print (or print the JSON document)."""
    from rich.console import Console

    from torchgate_bench.peers.v2_options import V2Options
    from torchgate_bench.peers.v2_records import v2_peers_record
    from torchgate_bench.peers.v2_report import render
    from torchgate_bench.peers.v2_run import run_v2_peers

    options = V2Options(
        peers=peers,
        concurrency=config.concurrency,
        rounds=rounds or DEFAULT_ROUNDS,
        duration_s=config.duration_s,
        warmup_s=config.warmup_s,
        prepass=prepass,
        pythons=pythons,
        checkpoint_dir=config.checkpoint_dir,
        weights_dir=config.weights_dir,
        extra_env=config.extra_env,
        serve_args=config.serve_args,
        load_tool=config.load_tool,
        ready_timeout_s=config.ready_timeout_s,
        log_dir=config.log_dir,
    )
    try:
        result = run_v2_peers(options)
    except (RuntimeError, TimeoutError, OSError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    path = results.write(v2_peers_record(result))
    command = command_line()
    document = {"command": command, **result.to_document()}
    if json_out is not None:
        json_out.write_text(json.dumps(document, indent=2, default=str) + "\n")
    if json_output:
        typer.echo(json.dumps(document, indent=2, default=str))
    else:
        render(result, Console(width=200), command)
    typer.echo(f"results: {path}", err=True)
