"""Which server answers the gRPC port, per TORCHGATE_GRPC_SERVER, and a taken port."""

from __future__ import annotations

import socket
from collections.abc import Callable

import grpc
import pytest
import torch

from app.api.grpc.h2_server import GrpcH2Server
from app.api.grpc.server import start_grpc_server, stop_grpc_server
from app.api.upload_budget import UploadBudget
from app.config import Settings
from app.errors import ConfigurationError
from app.metrics import Metrics
from app.serving.registry import ModelRegistry
from tests.helpers.servers import free_port

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


@pytest.mark.parametrize(("choice", "kind"), [("zttp", GrpcH2Server), ("grpcio", grpc.aio.Server)])
async def test_the_setting_picks_the_server(
    settings_factory: Callable[..., Settings], choice: str, kind: type
) -> None:
    settings = settings_factory(grpc_port=free_port(), grpc_server=choice, models=())
    metrics = Metrics(torch.device("cpu"))
    budget = UploadBudget(1_000)
    server = await start_grpc_server(
        settings, ModelRegistry(settings, torch.device("cpu"), metrics), metrics, budget
    )
    try:
        assert isinstance(server, kind)
        if isinstance(server, GrpcH2Server):  # the process's budget, shared with HTTP
            assert server._app.budget is budget
    finally:
        await stop_grpc_server(server)


@pytest.mark.parametrize("choice", ["zttp", "grpcio"])
async def test_a_taken_port_fails_the_start_with_what_to_do(
    settings_factory: Callable[..., Settings], choice: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = settings_factory(grpc_port=port, grpc_server=choice, models=())
        metrics = Metrics(torch.device("cpu"))
        registry = ModelRegistry(settings, torch.device("cpu"), metrics)
        with pytest.raises(ConfigurationError, match="TORCHGATE_GRPC_PORT"):
            await start_grpc_server(settings, registry, metrics)
