"""Build the FastAPI application: settings, lifespan (model loading), routers, error handlers."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig

from app import __version__
from app.admin_token import admin_token
from app.api import ADMIN_ROUTER, PUBLIC_ROUTERS
from app.api.connections import GuardedHttpProtocol
from app.api.grpc.server import start_grpc_server, stop_grpc_server
from app.api.http_errors import install_error_handlers
from app.api.middleware import ServingMiddleware
from app.api.routes import add_routes
from app.api.upload_budget import UploadBudget
from app.config import Settings
from app.draining import Drain
from app.metrics import Metrics
from app.serving.devices import configure_backends, configure_threads, resolve_device
from app.serving.evaluations import Evaluator
from app.serving.jobs import Jobs
from app.serving.precision_jobs import PrecisionTrials, blocking_change
from app.serving.registry import ModelRegistry
from app.serving.store import open_store
from app.serving.store.connection import redis_options
from app.serving.sync import ParameterSync
from app.tracing import skip_unused_record_fields

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app for ``settings`` (read from the environment when omitted); a secret that
    cannot stay as it is raises ConfigurationError here, before anything loads."""
    settings = settings or Settings()
    # Unset: this app is a service of its own, so its store lives in memory (``serve`` sets
    # a file shared by its workers before they start).
    state_url = settings.state_url or "sqlite://"
    store_options = redis_options(settings, state_url)
    token = admin_token(settings) if settings.admin_enabled else None
    device = resolve_device(settings.device)
    configure_backends(device)
    configure_threads(
        settings.torch_threads_per_worker(os.cpu_count() or 1, cuda=device.type == "cuda")
    )
    sys.setswitchinterval(settings.gil_switch_interval_ms / 1000)
    gc.set_threshold(settings.gc_gen0_threshold, *gc.get_threshold()[1:])
    skip_unused_record_fields()  # in every worker process: each builds its own app
    # serve's HTTP connections (uvicorn's protocol, guarded), in this worker process
    GuardedHttpProtocol.configure(settings.header_timeout_s, settings.max_header_bytes)
    metrics = Metrics(device)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = open_store(
            state_url, settings.process_timeout_s, settings.job_lease_s, **store_options
        )
        registry = ModelRegistry(settings, device, metrics)
        sync = ParameterSync(
            store,
            registry,
            settings,
            on_tick=lambda: metrics.sample_gauges(*registry.gauge_samples()),
        )
        app.state.registry, app.state.sync = registry, sync
        app.state.jobs = jobs = Jobs(store, sync.process_id, settings.job_progress_timeout_s)
        app.state.evaluator = Evaluator(registry, settings.data_dir, store)
        promote = blocking_change(sync.change, asyncio.get_running_loop())
        app.state.trials = PrecisionTrials(registry, settings.data_dir, promote)
        app.state.drain = drain = Drain()
        tasks = [
            asyncio.create_task(registry.load_all(), name="load-models"),
            asyncio.create_task(sync.run(), name="control-store-sync"),
        ]
        try:
            # gRPC answers at once, like /healthz; ServerReady waits for the models like /readyz
            grpc_server = await start_grpc_server(
                settings, registry, metrics, app.state.upload_budget
            )
            drain.on_start(lambda: stop_grpc_server(grpc_server))
            with drain.on_server_signals():  # HTTP and gRPC stop taking work at one moment
                yield
        finally:
            await drain.finish()  # first: calls in flight still have their models
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await jobs.close()
            await sync.close()
            await registry.close()
            store.close()
            metrics.close()

    app = FastAPI(
        title="torchgate",
        version=__version__,
        summary="Serve PyTorch models over HTTP, with token-protected admin operations.",
        lifespan=lifespan,
        # /docs, /redoc and /openapi.json: app/api/docs.py, from local assets, with headers
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        telemetry=_telemetry(settings),
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.admin_token = token
    routers = list(PUBLIC_ROUTERS)
    if settings.admin_enabled and settings.admin_port is None:
        routers.append(ADMIN_ROUTER)
    add_routes(app, routers)
    app.state.upload_budget = UploadBudget(settings.max_upload_bytes_in_flight)
    _add_common(app, settings)
    return app


def _telemetry(settings: Settings) -> TelemetryConfig:
    on = settings.opentelemetry
    return {"tracing": on, "metrics": on, "logs": on}


def _add_common(app: FastAPI, settings: Settings) -> None:
    install_error_handlers(app)
    app.add_middleware(
        ServingMiddleware,
        metrics=app.state.metrics,
        max_body_bytes=settings.max_upload_bytes,
        budget=app.state.upload_budget,  # one per process: the admin app shares the main one's
        chunk_timeout_s=settings.body_chunk_timeout_s,
        body_deadline_s=settings.body_deadline_s,
    )


def create_admin_app(main_app: FastAPI) -> FastAPI:
    """The admin API on its own listener (TORCHGATE_ADMIN_PORT), so it can be bound to a
    private interface; it shares the main app's models and jobs, and has no lifespan."""
    settings: Settings = main_app.state.settings
    admin_app = FastAPI(  # admin only: no pages, no schema on the admin listener
        title="torchgate admin",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        telemetry=_telemetry(settings),
    )
    admin_app.state = main_app.state
    add_routes(admin_app, [ADMIN_ROUTER])
    _add_common(admin_app, settings)
    return admin_app
