"""Command line: ``python -m app serve | weights download | train | bench``."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from typing import Annotated, NoReturn

import typer

from app.bench_handoff import add_bench_commands
from app.config import Settings
from app.training.cli import train_app

cli = typer.Typer(no_args_is_help=True, help="torchgate: serve PyTorch models over HTTP.")
weights_cli = typer.Typer(no_args_is_help=True, help="Manage pretrained ImageNet weights.")
cli.add_typer(weights_cli, name="weights")
cli.add_typer(train_app, name="train")
add_bench_commands(cli)  # bench, soak, bench-replicas, bench-graphs: torchgate_bench's

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address [TORCHGATE_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [TORCHGATE_PORT].")] = None,
    grpc_port: Annotated[
        int | None, typer.Option(help="gRPC port, 0 turns it off [TORCHGATE_GRPC_PORT].")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="Worker processes [TORCHGATE_WORKERS]; each loads every model."),
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Start the HTTP server (and gRPC, TORCHGATE_GRPC_PORT) with the enabled models."""
    import logging.config

    import uvicorn

    from app.errors import ConfigurationError
    from app.metrics_multiprocess import multiprocess_metrics
    from app.serving.devices import resolve_device
    from app.serving.store.connection import redis_options
    from app.serving.store.scope import run_scoped_store
    from app.tracing import log_config

    if workers is not None:  # worker processes read their settings from the environment
        os.environ["TORCHGATE_WORKERS"] = str(workers)
    if host is not None:  # gRPC listens on the same interface as HTTP
        os.environ["TORCHGATE_HOST"] = host
    if grpc_port is not None:
        os.environ["TORCHGATE_GRPC_PORT"] = str(grpc_port)
    settings = Settings()
    # Every line carries its request's X-Request-ID; TORCHGATE_LOG_FORMAT=json for collectors.
    logging.config.dictConfig(log_config(log_level, settings.log_format))
    try:
        resolve_device(settings.device)
        redis_options(settings, settings.state_url or "sqlite://")
        settings = _one_token_for_every_worker(settings)
    except ConfigurationError as exc:
        _refuse(exc)
    # uvicorn drains in-flight requests on SIGTERM, then re-raises the signal to whatever
    # handler was there before it; a no-op one makes a graceful stop exit with status 0.
    signal.signal(signal.SIGTERM, lambda *_: None)
    options = {
        "log_level": log_level,
        "log_config": log_config(log_level, settings.log_format),
        "access_log": settings.access_log,
        "loop": "uvloop",
        # uvicorn's httptools protocol with a deadline and a size bound on request heads
        "http": "app.api.connections:GuardedHttpProtocol",
        "limit_concurrency": settings.max_connections,  # more connections or requests: 503
        "timeout_graceful_shutdown": 30,
    }
    host = host or settings.host
    port = settings.port if port is None else port
    if settings.admin_enabled and settings.admin_port is not None:
        if settings.workers > 1:
            typer.echo("error: TORCHGATE_ADMIN_PORT needs a single worker process.", err=True)
            raise typer.Exit(2)
        _serve_with_admin_listener(settings, host, port, options)
        return
    with contextlib.ExitStack() as stack:
        try:  # workers share one control store (parameters, jobs) and one /metrics
            stack.enter_context(run_scoped_store(settings))
        except ConfigurationError as exc:
            _refuse(exc)
        stack.enter_context(multiprocess_metrics(settings.workers))
        uvicorn.run(
            "app.main:create_app",
            factory=True,
            host=host,
            port=port,
            workers=settings.workers,
            **options,
        )


def _refuse(exc: Exception) -> NoReturn:
    """A configuration that cannot start: one line on stderr, exit status 2."""
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(2) from exc


def _one_token_for_every_worker(settings: Settings) -> Settings:
    """Resolve the admin token here, once (a generated one is shown once, from this process),
    and hand it to the workers through the environment their settings are read from."""
    from pydantic import SecretStr

    from app.admin_token import admin_token

    if not settings.admin_enabled:
        return settings
    token = admin_token(settings)
    os.environ["TORCHGATE_ADMIN_TOKEN"] = token
    os.environ.pop("TORCHGATE_ADMIN_TOKEN_FILE", None)  # read (or written) here, once
    return settings.model_copy(update={"admin_token": SecretStr(token), "admin_token_file": None})


def _serve_with_admin_listener(
    settings: Settings, host: str, port: int, options: dict[str, object]
) -> None:
    """The public API and the admin API on two listeners of one process (one set of models)."""
    import asyncio

    import uvicorn

    from app.main import create_admin_app, create_app

    class _AdminServer(uvicorn.Server):
        """Leaves signals to the public server, which stops the admin one when it is done."""

        def capture_signals(self) -> contextlib.AbstractContextManager[None]:
            return contextlib.nullcontext()

    app = create_app(settings)
    public = uvicorn.Server(uvicorn.Config(app, host=host, port=port, **options))
    admin = _AdminServer(
        uvicorn.Config(
            create_admin_app(app),
            host=settings.admin_host,
            port=settings.admin_port,
            lifespan="off",
            **options,
        )
    )

    async def run() -> None:
        admin_task = asyncio.create_task(admin.serve())
        await public.serve()
        admin.should_exit = True
        await admin_task

    try:
        import uvloop
    except ImportError:  # uvicorn[standard] brings it; plain asyncio works too
        asyncio.run(run())
    else:
        uvloop.run(run())


@weights_cli.command("download")
def download_weights(
    names: Annotated[
        list[str] | None, typer.Argument(help="Models (default: all three ImageNet ones).")
    ] = None,
) -> None:
    """Fetch the official pretrained files into TORCHGATE_WEIGHTS_DIR, verifying their hash."""
    from app.errors import WeightsUnavailable
    from app.serving.weights import ensure_pretrained_file
    from app.zoo import SPECS, get_spec

    logging.basicConfig(level="INFO", format=LOG_FORMAT)
    settings = Settings()
    chosen = names or [name for name, spec in SPECS.items() if spec.pretrained is not None]
    failed = False
    for name in chosen:
        spec = get_spec(name) if name in SPECS else None
        if spec is None or spec.pretrained is None:
            typer.echo(f"{name}: not a pretrained model (choose from alexnet, vgg16, resnet101)")
            failed = True
            continue
        try:
            path = ensure_pretrained_file(
                spec.pretrained, settings.weights_dir, download=True, verify=settings.verify_weights
            )
        except WeightsUnavailable as exc:
            typer.echo(f"{name}: {exc}", err=True)
            failed = True
        else:
            typer.echo(f"{name}: {path}")
    if failed:
        raise typer.Exit(1)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
