"""Run the gRPC service in the app's event loop, next to uvicorn, for the app's lifespan: on
zttp's HTTP/2 (``h2_server``, the default) or grpcio's grpc.aio (TORCHGATE_GRPC_SERVER=grpcio).

One process or many: with ``--workers N`` every worker binds the same port with SO_REUSEPORT
(``_listen``, or grpc's ``grpc.so_reuseport``) and the kernel spreads connections between them;
a single worker binds it exclusively, so a port already taken fails the start instead of
sharing it.
"""

from __future__ import annotations

import logging
import socket

import grpc

from app.api.grpc.asgi import GrpcAsgiApp
from app.api.grpc.h2_server import GrpcH2Server
from app.api.grpc.proto.inference_pb2_grpc import add_GRPCInferenceServiceServicer_to_server
from app.api.grpc.servicer import InferenceServicer
from app.api.upload_budget import UploadBudget
from app.config import Settings
from app.errors import ConfigurationError
from app.metrics import Metrics
from app.serving.registry import ModelRegistry

# As long as uvicorn's graceful shutdown (serve's timeout_graceful_shutdown), from the same
# moment (the stop signal, app/draining.py): new calls are refused, those in flight get this
# long to finish.
SHUTDOWN_GRACE_S = 30.0
GrpcServer = GrpcH2Server | grpc.aio.Server
logger = logging.getLogger(__name__)


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def _listen(settings: Settings) -> socket.socket:
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if settings.workers > 1:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((settings.host.strip("[]"), settings.grpc_port))
    except OSError as exc:
        sock.close()
        address = _address(settings.host, settings.grpc_port)
        raise ConfigurationError(
            f"cannot listen for gRPC on {address} (is the port taken?): set "
            "TORCHGATE_GRPC_PORT to a free port, or to 0 to turn gRPC off."
        ) from exc
    sock.setblocking(False)
    return sock


async def start_grpc_server(
    settings: Settings,
    registry: ModelRegistry,
    metrics: Metrics,
    budget: UploadBudget | None = None,
) -> GrpcServer | None:
    """The started server on TORCHGATE_HOST:TORCHGATE_GRPC_PORT, or None when the port is 0.
    ``budget``: the process's bound on request bytes held at once (the zttp server's)."""
    if not settings.grpc_port:
        return None
    limit = settings.max_upload_bytes  # the same bound as an HTTP body
    servicer = InferenceServicer(registry, settings, metrics)
    if settings.grpc_server == "zttp":
        server = GrpcH2Server(GrpcAsgiApp(servicer, limit, budget), _listen(settings))
        await server.start()
        address = _address(settings.host, settings.grpc_port)
        logger.info("Open Inference Protocol over gRPC on %s (HTTP/2 on the event loop)", address)
        return server
    return await _start_grpcio(settings, servicer, limit)


async def _start_grpcio(
    settings: Settings, servicer: InferenceServicer, limit: int
) -> grpc.aio.Server:
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            ("grpc.so_reuseport", int(settings.workers > 1)),
        ]
    )
    add_GRPCInferenceServiceServicer_to_server(servicer, server)
    address = _address(settings.host, settings.grpc_port)
    try:
        server.add_insecure_port(address)
    except RuntimeError as exc:
        raise ConfigurationError(
            f"cannot listen for gRPC on {address} (is the port taken?): set "
            "TORCHGATE_GRPC_PORT to a free port, or to 0 to turn gRPC off."
        ) from exc
    await server.start()
    logger.info("Open Inference Protocol over gRPC on %s (grpcio)", address)
    return server


async def stop_grpc_server(server: GrpcServer | None) -> None:
    """Refuse new calls at once (UNAVAILABLE: ServerReady and ModelReady included), and let
    those in flight finish, for up to SHUTDOWN_GRACE_S."""
    if server is not None:
        await server.stop(SHUTDOWN_GRACE_S)
