"""Run grpcio's grpc.aio server in the app's event loop, next to uvicorn, for the app's lifespan:
the inference service, ``grpc.health.v1.Health`` and server reflection.

One process or many: with ``--workers N`` every worker binds the same port with SO_REUSEPORT
(``grpc.so_reuseport``) and the kernel spreads connections between them; a single worker binds
it exclusively, so a port already taken fails the start instead of sharing it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import grpc
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

from app.api.grpc.health import SERVICE_NAME as HEALTH_SERVICE
from app.api.grpc.health import Health
from app.api.grpc.interceptors import CallObserver, ErrorMapper
from app.api.grpc.messages import UnaryRequestInterceptor
from app.api.grpc.options import server_credentials, server_options
from app.api.grpc.proto import inference_pb2
from app.api.grpc.proto.inference_pb2_grpc import add_GRPCInferenceServiceServicer_to_server
from app.api.grpc.servicer import SERVICE, InferenceServicer
from app.api.upload_budget import UploadBudget
from app.config import Settings
from app.errors import ConfigurationError
from app.metrics import Metrics
from app.serving.registry import ModelRegistry

# As long as uvicorn's graceful shutdown (serve's timeout_graceful_shutdown), from the same
# moment (the stop signal, app/draining.py): new calls are refused, those in flight get this
# long to finish.
SHUTDOWN_GRACE_S = 30.0
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GrpcServer:
    """The running server and the health service it answers (told first at the drain)."""

    server: grpc.aio.Server
    health: Health
    address: str


def _reflection_pool() -> DescriptorPool:
    """The .proto files reflection describes, in one pool: inference.proto's messages live in
    a pool of their own (proto/generate.py says why), the others in protobuf's default one."""
    pool = DescriptorPool()
    for file in (inference_pb2.DESCRIPTOR, health_pb2.DESCRIPTOR, reflection_pb2.DESCRIPTOR):
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        pool.Add(proto)
    return pool


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


async def start_grpc_server(
    settings: Settings,
    registry: ModelRegistry,
    metrics: Metrics,
    budget: UploadBudget | None = None,
) -> GrpcServer | None:
    """The started server on TORCHGATE_HOST:TORCHGATE_GRPC_PORT, or None when the port is 0.
    ``budget``: the process's bound on request bytes held at once, shared with HTTP (one of
    its own, of TORCHGATE_MAX_UPLOAD_BYTES_IN_FLIGHT, when none is given)."""
    if not settings.grpc_port:
        return None
    budget = budget or UploadBudget(settings.max_upload_bytes_in_flight)
    server = grpc.aio.server(
        interceptors=[  # the first wraps the others: the observer sees the mapped status
            CallObserver(metrics, settings.access_log),
            ErrorMapper(),
            UnaryRequestInterceptor(budget, settings.grpc_message_timeout_s),
        ],
        options=server_options(settings),
        maximum_concurrent_rpcs=settings.grpc_max_concurrent_rpcs,
    )
    add_GRPCInferenceServiceServicer_to_server(InferenceServicer(registry, settings), server)
    health = Health(registry)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    services = (SERVICE, HEALTH_SERVICE, reflection.SERVICE_NAME)
    reflection.enable_server_reflection(services, server, pool=_reflection_pool())
    address = _address(settings.host, settings.grpc_port)
    credentials = server_credentials(settings)
    try:
        if credentials is None:
            server.add_insecure_port(address)
        else:
            server.add_secure_port(address, credentials)
    except RuntimeError as exc:
        raise ConfigurationError(
            f"cannot listen for gRPC on {address} (is the port taken?): set "
            "TORCHGATE_GRPC_PORT to a free port, or to 0 to turn gRPC off."
        ) from exc
    await server.start()
    health.follow()
    tls = "plaintext" if credentials is None else "TLS"
    if settings.grpc_tls_client_ca_file is not None:
        tls = "mutual TLS"
    logger.info("Open Inference Protocol over gRPC on %s (grpcio, %s)", address, tls)
    return GrpcServer(server, health, address)


async def stop_grpc_server(server: GrpcServer | None) -> None:
    """Health turns NOT_SERVING (watchers are told), new calls are refused at once
    (UNAVAILABLE), and those in flight may finish, for up to SHUTDOWN_GRACE_S."""
    if server is not None:
        await server.health.shut_down()
        await server.server.stop(SHUTDOWN_GRACE_S)
