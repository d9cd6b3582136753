"""What a hostile or careless client does to a real server with small gRPC limits: calls
without a message or with an undecodable one, Rapid Reset, ping floods, silent and surplus
connections. Each is answered, bounded in seconds, and other clients are served on."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from app.api.grpc.proto import inference_pb2_grpc
from tests.helpers.grpc_servers import (
    ENHANCE_YOUR_CALM,
    INFER,
    INVALID_ARGUMENT,
    MAX_CONNECTIONS,
    LimitedServer,
    cnn_request,
    infer_cnn,
)
from tests.helpers.h2client import RawH2, grpc_frame

pytestmark = pytest.mark.integration  # a real server


def test_a_call_without_a_message_is_answered_at_once(limited_server: LimitedServer) -> None:
    """HEADERS with END_STREAM, or a body that ends before a whole message: grpcio alone left
    these calls unanswered for as long as the connection lived."""
    bodies = [b"", b"\0\0", grpc_frame(b"x" * 10, declared=100)]  # empty, prefix cut, message cut
    client = RawH2(limited_server.target)
    try:
        for path in (INFER, "/grpc.health.v1.Health/Check"):
            started = time.monotonic()
            headers_only = client.wait(client.open(path, end_stream=True), 5)
            assert headers_only.status == INVALID_ARGUMENT
            assert time.monotonic() - started < 2
            for body in bodies:
                stream = client.open(path)
                client.send(stream, body, end_stream=True)
                assert client.wait(stream, 5).status == INVALID_ARGUMENT
    finally:
        client.close()
    assert infer_cnn(limited_server.target).model_name == "cnn"  # and the slots were given back


def test_an_undecodable_message_is_invalid_argument_in_one_log_line(
    limited_server: LimitedServer,
) -> None:
    with grpc.insecure_channel(limited_server.target) as channel:
        raw = channel.unary_unary(INFER)  # no serializer: these bytes go out as they are
        with pytest.raises(grpc.RpcError) as refused:
            raw(b"\xff\xff\xff\xff", metadata=[("x-request-id", "garbage-1")], timeout=5)
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "not valid protobuf" in refused.value.details()
    time.sleep(0.3)
    lines = [json.loads(line) for line in limited_server.log.read_text().splitlines() if line]
    ours = [line for line in lines if line.get("request_id") == "garbage-1"]
    assert len(ours) == 1 and "INVALID_ARGUMENT" in ours[0]["message"]
    assert "not valid protobuf" in ours[0]["message"]
    assert not any("Traceback" in line.get("message", "") for line in lines)
    assert all("exc_info" not in line for line in ours)


def _victim(target: str, stop: threading.Event, codes: Counter[str]) -> None:
    with grpc.insecure_channel(target) as channel:
        stub = inference_pb2_grpc.GRPCInferenceServiceStub(channel)
        while not stop.is_set():
            calls = [stub.ModelInfer.future(cnn_request(), timeout=10) for _ in range(8)]
            for call in calls:
                try:
                    call.result()
                    codes["OK"] += 1
                except grpc.RpcError as exc:
                    codes[exc.code().name] += 1


@pytest.mark.parametrize("with_message", [False, True], ids=["headers", "headers+message"])
def test_rapid_reset_does_not_cancel_other_clients_calls(
    limited_server: LimitedServer, with_message: bool
) -> None:
    stop, codes = threading.Event(), Counter[str]()
    victim = threading.Thread(target=_victim, args=(limited_server.target, stop, codes))
    victim.start()
    attacker = RawH2(limited_server.target)
    message = grpc_frame(cnn_request().SerializeToString())
    try:
        time.sleep(0.3)
        for number in range(3000):
            if attacker.closed:
                break
            stream = attacker.open(INFER)
            if with_message:
                attacker.send(stream, message)
            attacker.reset(stream)
            if number % 50 == 0:
                attacker.receive(0.001)
        attacker.receive(0.5)
    finally:
        stop.set()
        victim.join(30)
        attacker.close()
    assert codes["OK"] > 0 and set(codes) == {"OK"}, codes
    assert infer_cnn(limited_server.target).model_name == "cnn"


def test_a_client_pinging_too_often_is_sent_away_and_others_are_not(
    limited_server: LimitedServer,
) -> None:
    flood = RawH2(limited_server.target)
    try:
        for _ in range(10):
            flood.ping()
            flood.receive(0.05)
            if flood.goaway is not None:
                break
        assert flood.goaway is not None
        assert flood.goaway.error_code == ENHANCE_YOUR_CALM
        assert flood.goaway.additional_data == b"too_many_pings"
    finally:
        flood.close()
    eager = [
        ("grpc.keepalive_time_ms", 100),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]
    request = health_pb2.HealthCheckRequest(service="")
    with (
        grpc.insecure_channel(limited_server.target, options=eager) as pinging,
        grpc.insecure_channel(limited_server.target) as polite,
    ):
        watch = health_pb2_grpc.HealthStub(pinging).Watch(request, timeout=15)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        calm = health_pb2_grpc.HealthStub(polite).Watch(request, timeout=15)
        assert next(calm).status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as sent_away:
            next(watch)  # its pings come every 100 ms, the server allows one per 10 s
        assert sent_away.value.code() is grpc.StatusCode.UNAVAILABLE
        assert sent_away.value.details() == "Too many pings"
        stub = inference_pb2_grpc.GRPCInferenceServiceStub(polite)
        assert stub.ModelInfer(cnn_request(), timeout=10).model_name == "cnn"
        calm.cancel()


def test_silent_and_surplus_connections_are_closed(limited_server: LimitedServer) -> None:
    host, port = limited_server.target.rsplit(":", 1)
    silent = socket.create_connection((host, int(port)), timeout=5)
    started = time.monotonic()
    while silent.recv(4096):  # the server's SETTINGS, then nothing until it closes
        pass
    assert time.monotonic() - started < 3  # TORCHGATE_GRPC_HANDSHAKE_TIMEOUT_S=1
    silent.close()
    clients = [RawH2(limited_server.target) for _ in range(MAX_CONNECTIONS + 5)]
    try:
        for client in clients:
            client.receive(0.02)
        refused = [client for client in clients if client.closed]
        assert 5 <= len(refused) <= 8, len(refused)  # a few may still be closing elsewhere
    finally:
        for client in clients:
            client.close()
    time.sleep(0.3)
    assert infer_cnn(limited_server.target).model_name == "cnn"
