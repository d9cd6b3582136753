"""``python -m torchgate_bench bench``: the typer command; parsing and printing only (the work is
in runner, startup and peers), and every run's result written as data (results.py)."""

from __future__ import annotations

import json
import logging
import signal
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from torchgate_bench.peers.command import PeerNames
from torchgate_bench.peers.v2_command import (
    DEFAULT_KSERVE_PYTHON,
    DEFAULT_TRITON_PYTHON,
    KservePython,
    Prepass,
    TritonPython,
)
from torchgate_bench.results import DEFAULT_RESULTS_DIR, ResultsDir, ResultsRun

if TYPE_CHECKING:
    from torchgate_bench.config import BenchConfig


class Batching(StrEnum):
    ON = "on"
    OFF = "off"
    BOTH = "both"


class Upload(StrEnum):
    MULTIPART = "multipart"
    RAW = "raw"


class Protocol(StrEnum):
    V1 = "v1"
    V2 = "v2"
    GRPC = "grpc"
    ALL = "all"


class LoadTool(StrEnum):
    AUTO = "auto"
    WRK = "wrk"
    HTTPX = "httpx"


def _parse_env(pairs: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--env")
        env[key.strip()] = value
    return env


def _check_model(model: str) -> str:
    from app.zoo import SPECS

    spec = SPECS.get(model)
    if spec is None or not spec.is_classifier:
        choices = ", ".join(name for name, s in SPECS.items() if s.is_classifier)
        raise typer.BadParameter(f"choose a classifier: {choices}", param_hint="--model")
    return model


def bench(
    context: typer.Context,
    model: Annotated[str, typer.Option(help="Classifier to load and drive.")] = "alexnet",
    concurrency: Annotated[int, typer.Option(min=1, help="Connections in the closed loop.")] = 8,
    duration: Annotated[float, typer.Option(min=0.5, help="Measured seconds (wrk: whole).")] = 10.0,
    warmup: Annotated[float, typer.Option(min=0, help="Unmeasured seconds first.")] = 2.0,
    images_per_request: Annotated[int, typer.Option(min=1, help="Files per request.")] = 1,
    upload: Annotated[
        Upload, typer.Option(help="multipart 'file' parts, or raw: the image as the body.")
    ] = Upload.MULTIPART,
    protocol: Annotated[
        Protocol,
        typer.Option(
            help="v1 REST (--upload), v2 REST (binary BYTES), v2 gRPC (raw BYTES); all: the "
            "three in alternating rounds against one server, with their ratios."
        ),
    ] = Protocol.V1,
    batching: Annotated[
        Batching, typer.Option(help="on: configured; off: TORCHGATE_MAX_BATCH_SIZE=1; both.")
    ] = Batching.ON,
    baseline_healthz: Annotated[
        bool, typer.Option(help="Also drive GET /healthz at the same concurrency.")
    ] = False,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Passed to serve as --workers N.")
    ] = None,
    env: Annotated[
        list[str] | None, typer.Option(help="Server environment KEY=VALUE (repeatable).")
    ] = None,
    serve_arg: Annotated[
        list[str] | None, typer.Option(help="Extra flag for serve, e.g. --serve-arg=--x=1.")
    ] = None,
    weights_dir: Annotated[
        Path | None, typer.Option(help="Pretrained files (default: random weights, temp dir).")
    ] = None,
    checkpoint_dir: Annotated[Path, typer.Option(help="Trained cnn/lstm checkpoints.")] = Path(
        "models"
    ),
    raw: Annotated[bool, typer.Option(help="Measure raw in-process throughput too.")] = True,
    raw_budget: Annotated[
        float, typer.Option(min=1, help="Seconds for the raw forward grid.")
    ] = 20.0,
    try_compile: Annotated[bool, typer.Option(help="Try torch.compile in the raw grid.")] = False,
    raw_threads: Annotated[
        int | None, typer.Option(min=1, help="Only N torch threads in raw (default: all, 1).")
    ] = None,
    load_tool: Annotated[LoadTool, typer.Option(help="auto: wrk if installed.")] = LoadTool.AUTO,
    ready_timeout: Annotated[
        float, typer.Option(help="Seconds to wait for /readyz and the graphs built after it.")
    ] = 300.0,
    log_dir: Annotated[
        Path | None, typer.Option(help="Keep every server's log here (default: failed ones).")
    ] = None,
    served: Annotated[
        str,
        typer.Option(
            help="What the server loads: 'all' (serve's default six, as users run it), 'one' "
            "(--model alone) or a comma list."
        ),
    ] = "all",
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON document instead of tables.")
    ] = False,
    startup: Annotated[
        bool,
        typer.Option(
            "--startup",
            help="Instead: cold start and memory with all six models vs torch.load alone.",
        ),
    ] = False,
    startup_requests: Annotated[
        int, typer.Option(min=0, help="--startup: cnn requests served before memory is read.")
    ] = 10_000,
    peer: PeerNames = None,
    rounds: Annotated[
        int | None, typer.Option(min=1, help="--peer: rounds (TorchServe's family 5, v2 3).")
    ] = None,
    peer_grid: Annotated[
        str, typer.Option(help="--peer: WORKERSxBATCH configurations the pre-pass tries.")
    ] = "1x1,1x8,2x1,2x8",
    peers_python: Annotated[
        Path, typer.Option(help="--peer: python of the venv with torchserve and litserve.")
    ] = Path("/tmp/peers/venv/bin/python"),
    triton_python: TritonPython = DEFAULT_TRITON_PYTHON,
    kserve_python: KservePython = DEFAULT_KSERVE_PYTHON,
    prepass: Prepass = True,
    json_out: Annotated[
        Path | None, typer.Option(help="--peer: also write the JSON document to this file.")
    ] = None,
    results_dir: ResultsDir = DEFAULT_RESULTS_DIR,
) -> None:
    """Serve a model in a real server process, load it from another, and compare with raw."""
    from dataclasses import replace

    from rich.console import Console

    from torchgate_bench.config import BenchConfig
    from torchgate_bench.records import bench_record
    from torchgate_bench.report import render, to_document
    from torchgate_bench.runner import run_bench

    _exit_on_sigterm()
    logging.basicConfig(level="INFO", format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per /readyz poll otherwise
    config = BenchConfig(
        model=_check_model(model),
        concurrency=concurrency,
        duration_s=duration,
        warmup_s=warmup,
        images_per_request=images_per_request,
        upload=upload.value,
        batching=batching.value,
        baseline_healthz=baseline_healthz,
        workers=workers,
        extra_env=_parse_env(env or []),
        serve_args=tuple(serve_arg or ()),
        weights_dir=weights_dir.resolve() if weights_dir else None,
        checkpoint_dir=checkpoint_dir.resolve(),
        raw=raw,
        raw_budget_s=raw_budget,
        try_compile=try_compile,
        raw_threads=raw_threads,
        load_tool=load_tool.value,
        ready_timeout_s=ready_timeout,
        protocol=protocol.value,
        log_dir=log_dir.resolve() if log_dir else None,
        served_models=_served_models(served, model),
    )
    results = ResultsRun(results_dir)
    if peer is not None:
        from torchgate_bench.peers.command import PeerOptions, run_peer_families

        source = context.get_parameter_source("concurrency")  # typer's own copy of click's
        concurrency_given = source is not None and source.name != "DEFAULT"
        config = replace(config, concurrency=concurrency if concurrency_given else 32)
        pythons = {"triton": triton_python, "kserve": kserve_python}
        options = PeerOptions(
            rounds, peer_grid, peers_python, pythons, prepass, json_out, json_output
        )
        run_peer_families(config, peer, options, results)
        return
    machine = results.machine
    if startup:
        _startup(config, startup_requests, json_output, results)
        return
    try:
        result = run_bench(config)
    except (RuntimeError, TimeoutError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    stand_ins = _random_weights(config)
    path = results.write(bench_record(result, stand_ins))
    if json_output:
        document = to_document(result, {**machine, "random_weights": stand_ins})
        typer.echo(json.dumps(document, indent=2))
    else:
        render(result, machine, Console())
        if stand_ins:
            typer.echo(
                f"weights: RANDOM for {', '.join(stand_ins)} (no --weights-dir; the ImageNet "
                "files are not downloaded): written under the official file names, batch-norm "
                "statistics measured on random inputs. Throughput is the architecture's; the "
                "predictions mean nothing."
            )
    typer.echo(f"results: {path}", err=True)


def _random_weights(config: BenchConfig) -> list[str]:
    """The pretrained models this run serves with random stand-ins (weights.py),
    which its output must say."""
    from torchgate_bench.weights import needs_pretrained_weights

    if config.weights_dir is not None:
        return []
    return [name for name in config.server_models if needs_pretrained_weights(name)]


def _served_models(served: str, model: str) -> tuple[str, ...] | None:
    if served == "all":
        return None
    if served == "one":
        return (model,)
    from app.zoo import SPECS

    names = tuple(name.strip() for name in served.split(",") if name.strip())
    unknown = [name for name in names if name not in SPECS]
    if unknown or not names:
        raise typer.BadParameter(
            f"'all', 'one' or models from {', '.join(SPECS)}", param_hint="--served"
        )
    return names


def _exit_on_sigterm() -> None:
    """``timeout`` (and tools/device/check.sh) stop a run with SIGTERM: unwind, so that
    every server this run started is stopped by its context manager instead of living on in
    its own session (holding the GPU)."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def _startup(config: BenchConfig, requests: int, json_output: bool, results: ResultsRun) -> None:
    from torchgate_bench.startup import measure_startup
    from torchgate_bench.startup_report import format_startup, startup_record

    result = measure_startup(
        config.checkpoint_dir,
        requests=requests,
        env=config.extra_env,
        weights_dir=config.weights_dir,
        log_dir=config.log_dir,
        ready_timeout_s=config.ready_timeout_s,
    )
    path = results.write(startup_record(result))
    if json_output:
        typer.echo(json.dumps({**results.machine, **result.to_dict()}, indent=2))
    else:
        typer.echo(format_startup(result, results.machine))
    typer.echo(f"results: {path}", err=True)
