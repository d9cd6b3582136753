"""``serve --server granian``: the app under granian (a Rust HTTP server) instead of uvicorn.

Each of uvicorn's settings in ``serve`` is mapped onto granian's, so the service behaves the
same: every worker process runs the app's lifespan (models, control-store sync, its gRPC server
on the shared port), the workers share one control store and one ``/metrics`` (set up by the
caller around this), and SIGTERM stops them gracefully with status 0.
"""

from __future__ import annotations

import multiprocessing
from typing import Any

from fastapi import FastAPI

from app.config import Settings
from app.errors import ConfigurationError

APP_FACTORY = "app.main:create_app"
# After SIGTERM a worker answers what is in flight (uvicorn gets 30 s for that in serve), then
# runs the lifespan's shutdown (the gRPC grace of 30 s started at the signal, app/draining.py);
# a worker still alive after this long is killed.
WORKER_KILL_TIMEOUT_S = 60
BACKLOG = 2048  # uvicorn's default (granian's is 1024)


def load_app(_target: str) -> FastAPI:
    """Build the app in a worker, as uvicorn's factory=True does (settings from the env)."""
    from app.main import create_app

    return create_app()


def granian_log_config(base: dict[str, Any]) -> dict[str, Any]:
    """``base`` (app/tracing.py's) with granian's loggers routed like uvicorn's: its own
    records to the root handler, access records to the access handler (stdout)."""
    loggers = {
        **base.get("loggers", {}),
        "_granian": {"handlers": [], "propagate": True},
        "granian.access": {"handlers": ["access"], "propagate": False},
    }
    return {**base, "loggers": loggers}


def run_granian(
    settings: Settings, host: str, port: int, log_level: str, log_config: dict[str, Any]
) -> None:
    """Serve until SIGTERM or SIGINT; returns once every worker has stopped."""
    try:
        from granian.constants import HTTPModes, Interfaces, Loops
        from granian.http import HTTP1Settings
        from granian.log import LogLevels
        from granian.server import Server
    except ImportError as exc:
        raise ConfigurationError(
            "granian is not installed: pip install 'torchgate[granian]', "
            "or serve with TORCHGATE_SERVER=uvicorn."
        ) from exc
    # Fresh interpreters, as uvicorn's workers: a forked child of a parent that has touched
    # CUDA (device resolution) cannot use it, and torch's thread pools do not survive fork.
    multiprocessing.set_start_method("spawn", force=True)
    server = Server(
        APP_FACTORY,
        address=host,
        port=port,
        interface=Interfaces.ASGI,  # with the lifespan, in every worker
        workers=settings.workers,
        loop=Loops.uvloop,
        http=HTTPModes.http1,  # what uvicorn speaks
        http1_settings=HTTP1Settings(keep_alive=True),
        backlog=BACKLOG,
        log_level=LogLevels(log_level.lower()),
        log_dictconfig=granian_log_config(log_config),
        log_access=settings.access_log,
        workers_kill_timeout=WORKER_KILL_TIMEOUT_S,
        # uvicorn replaces a worker that dies when there are several; one is the server itself
        respawn_failed_workers=settings.workers > 1,
    )
    server.serve(target_loader=load_app)
