"""Command line: ``python -m app serve | weights download | train | bench``."""

from __future__ import annotations

import logging
import os
import signal
from typing import Annotated

import typer

from app.bench.cli import bench
from app.config import Settings
from app.training.cli import train_app

cli = typer.Typer(no_args_is_help=True, help="torchgate: serve PyTorch models over HTTP.")
weights_cli = typer.Typer(no_args_is_help=True, help="Manage pretrained ImageNet weights.")
cli.add_typer(weights_cli, name="weights")
cli.add_typer(train_app, name="train")
cli.command("bench")(bench)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address [TORCHGATE_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [TORCHGATE_PORT].")] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="Worker processes [TORCHGATE_WORKERS]; each loads every model."),
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Start the HTTP server with the enabled models."""
    import logging.config

    import uvicorn

    from app.errors import ConfigurationError
    from app.serving.devices import resolve_device
    from app.tracing import log_config

    if workers is not None:  # worker processes read their settings from the environment
        os.environ["TORCHGATE_WORKERS"] = str(workers)
    settings = Settings()
    # Every line carries its request's X-Request-ID; TORCHGATE_LOG_FORMAT=json for collectors.
    logging.config.dictConfig(log_config(log_level, settings.log_format))
    try:
        resolve_device(settings.device)
    except ConfigurationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    # uvicorn drains in-flight requests on SIGTERM, then re-raises the signal to whatever
    # handler was there before it; a no-op one makes a graceful stop exit with status 0.
    signal.signal(signal.SIGTERM, lambda *_: None)
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=host or settings.host,
        port=settings.port if port is None else port,
        log_level=log_level,
        log_config=log_config(log_level, settings.log_format),
        access_log=settings.access_log,
        workers=settings.workers,
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=30,
    )


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
