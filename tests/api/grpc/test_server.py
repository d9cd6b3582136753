"""The server as a client meets it before any model: the port, TLS and mutual TLS, reflection,
and the upload budget it shares with HTTP."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
import torch
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from app.api.grpc.proto import inference_pb2 as pb
from app.api.grpc.proto import inference_pb2_grpc
from app.api.grpc.server import start_grpc_server
from app.config import Settings
from app.errors import ConfigurationError
from app.metrics import Metrics
from tests.helpers.grpc_servers import FakeRegistry, ServerFactory

pytestmark = pytest.mark.anyio


async def test_a_taken_port_fails_the_start_with_what_to_do(
    settings_factory: Callable[..., Settings],
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        settings = settings_factory(grpc_port=taken.getsockname()[1], models=())
        metrics = Metrics(torch.device("cpu"))
        with pytest.raises(ConfigurationError, match="TORCHGATE_GRPC_PORT"):
            await start_grpc_server(settings, FakeRegistry(), metrics)  # type: ignore[arg-type]


async def test_port_zero_turns_grpc_off(settings_factory: Callable[..., Settings]) -> None:
    metrics = Metrics(torch.device("cpu"))
    settings = settings_factory(grpc_port=0, models=())
    assert await start_grpc_server(settings, FakeRegistry(), metrics) is None  # type: ignore[arg-type]


async def test_reflection_lists_the_services_and_describes_them(
    grpc_server: ServerFactory,
) -> None:
    async with grpc_server() as running, grpc.aio.insecure_channel(running.target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        requests = [
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(
                file_containing_symbol="inference.GRPCInferenceService"
            ),
        ]
        answers = [answer async for answer in stub.ServerReflectionInfo(iter(requests))]
    listed = {service.name for service in answers[0].list_services_response.service}
    assert listed == {
        "inference.GRPCInferenceService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    }
    assert answers[1].file_descriptor_response.file_descriptor_proto  # what grpcurl reads


async def test_grpc_messages_take_from_the_upload_budget_http_shares(
    grpc_server: ServerFactory,
) -> None:
    async with grpc_server() as running, grpc.aio.insecure_channel(running.target) as channel:
        stub = inference_pb2_grpc.GRPCInferenceServiceStub(channel)
        request = pb.ModelInferRequest(model_name="nope", raw_input_contents=[bytes(10_000)])
        running.budget.take(running.budget.max_bytes)  # HTTP uploads hold all of it
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ModelInfer(request, timeout=5)
        assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "TORCHGATE_MAX_UPLOAD_BYTES_IN_FLIGHT" in (refused.value.details() or "")
        running.budget.give_back(running.budget.max_bytes)
        with pytest.raises(grpc.aio.AioRpcError) as answered:  # now read, and answered
            await stub.ModelInfer(request, timeout=5)
        assert answered.value.code() is grpc.StatusCode.NOT_FOUND
        assert running.budget.held == 0  # each call gave back what it took


# -- TLS ------------------------------------------------------------------------------------------


def _tls_channel(target: str, pki: dict[str, Path], client_certificate: bool) -> grpc.aio.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki["ca"].read_bytes(),
        private_key=pki["client_key"].read_bytes() if client_certificate else None,
        certificate_chain=pki["client"].read_bytes() if client_certificate else None,
    )
    return grpc.aio.secure_channel(target, credentials)


async def _live(channel: grpc.aio.Channel) -> bool:
    stub = inference_pb2_grpc.GRPCInferenceServiceStub(channel)
    return (await stub.ServerLive(pb.ServerLiveRequest(), timeout=5)).live


async def test_tls_serves_clients_that_trust_its_ca_and_refuses_plaintext(
    grpc_server: ServerFactory, pki: dict[str, Path]
) -> None:
    files = {"grpc_tls_cert_file": pki["server"], "grpc_tls_key_file": pki["server_key"]}
    async with grpc_server(**files) as running:
        async with _tls_channel(running.target, pki, client_certificate=False) as channel:
            assert await _live(channel)
        async with grpc.aio.insecure_channel(running.target) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await _live(channel)
            assert refused.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_mutual_tls_refuses_a_client_without_a_certificate(
    grpc_server: ServerFactory, pki: dict[str, Path]
) -> None:
    files = {
        "grpc_tls_cert_file": pki["server"],
        "grpc_tls_key_file": pki["server_key"],
        "grpc_tls_client_ca_file": pki["ca"],
    }
    async with grpc_server(**files) as running:
        async with _tls_channel(running.target, pki, client_certificate=True) as channel:
            assert await _live(channel)
        async with _tls_channel(running.target, pki, client_certificate=False) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await _live(channel)
            assert refused.value.code() is grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize(
    "files",
    [
        {"grpc_tls_cert_file": "cert.pem"},
        {"grpc_tls_key_file": "key.pem"},
        {"grpc_tls_client_ca_file": "ca.pem"},
    ],
)
def test_tls_settings_must_come_together(files: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="TORCHGATE_GRPC_TLS"):
        Settings(**files)  # type: ignore[arg-type]


async def test_an_unreadable_certificate_fails_the_start_with_what_to_do(
    grpc_server: ServerFactory, tmp_path: Path
) -> None:
    missing = {"grpc_tls_cert_file": tmp_path / "no.pem", "grpc_tls_key_file": tmp_path / "k.pem"}
    with pytest.raises(ConfigurationError, match="TORCHGATE_GRPC_TLS"):
        async with grpc_server(**missing):
            pass
