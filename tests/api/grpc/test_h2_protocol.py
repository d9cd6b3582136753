"""The HTTP/2 side of the gRPC port, with grpcio's client and raw sockets against a real
listener: many calls on one connection, answers larger than the flow-control window, cancelled
calls, broken connections, an oversized message, and stopping with calls in flight."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import zttp

from app.api.grpc.asgi import CallContext, GrpcAsgiApp
from app.api.grpc.h2_protocol import UNFINISHED_MESSAGES
from app.api.grpc.h2_server import GrpcH2Server
from app.api.grpc.proto import inference_pb2 as pb
from app.api.grpc.proto.inference_pb2_grpc import GRPCInferenceServiceStub

pytestmark = pytest.mark.anyio
LIMIT = 4_000_000
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class SlowServicer:
    """ModelInfer sleeps ``id`` seconds, then answers with ``model_name`` repeated
    ``parameters['bytes']`` times; ServerLive answers at once."""

    def __init__(self) -> None:
        self.cancelled = 0
        self.finished: list[Any] = []

    async def ServerLive(self, request: Any, context: CallContext) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ModelInfer(self, request: Any, context: CallContext) -> pb.ModelInferResponse:
        try:
            await asyncio.sleep(float(request.id or 0))
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        size = request.parameters["bytes"].int64_param if "bytes" in request.parameters else 0
        return pb.ModelInferResponse(model_name="x" * size, id=request.id)

    def __getattr__(self, name: str) -> Any:
        async def unused(request: Any, context: CallContext) -> Any:
            raise AssertionError(name)

        return unused

    def finish(self, method: str, model: str, context: Any, code: Any, started: float) -> None:
        self.finished.append(code)


@pytest.fixture
async def served() -> AsyncIterator[tuple[GrpcH2Server, SlowServicer, str]]:
    servicer = SlowServicer()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    server = GrpcH2Server(GrpcAsgiApp(servicer, LIMIT), sock)  # type: ignore[arg-type]
    await server.start()
    try:
        yield server, servicer, f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        await server.stop(1)


def _infer(seconds: float = 0, size: int = 0) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="m", id=str(seconds))
    request.parameters["bytes"].int64_param = size
    return request


async def test_many_calls_share_one_connection(served: Any) -> None:
    _, _, target = served
    async with grpc.aio.insecure_channel(target) as channel:
        stub = GRPCInferenceServiceStub(channel)
        answers = await asyncio.gather(
            *(stub.ModelInfer(_infer(0.01 * (i % 5))) for i in range(64)),
            *(stub.ServerLive(pb.ServerLiveRequest()) for _ in range(64)),
        )
    assert [a.id for a in answers[:64]] == [str(0.01 * (i % 5)) for i in range(64)]
    assert all(a.live for a in answers[64:])


async def test_an_answer_larger_than_the_flow_control_window_arrives_whole(served: Any) -> None:
    _, _, target = served
    options = [("grpc.max_receive_message_length", 8_000_000)]
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        stub = GRPCInferenceServiceStub(channel)
        big = await asyncio.gather(*(stub.ModelInfer(_infer(0, 3_000_000)) for _ in range(3)))
    assert all(answer.model_name == "x" * 3_000_000 for answer in big)


async def test_a_message_over_the_limit_is_refused_while_it_streams_in(served: Any) -> None:
    """Refused once it outgrows the limit, then the stream is reset (NO_ERROR) so the client
    stops sending: it still sees the refusal, and the connection serves on."""
    _, _, target = served
    async with grpc.aio.insecure_channel(target) as channel:
        stub = GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ModelInfer(pb.ModelInferRequest(model_name="y" * (LIMIT + 10)))
        assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert (await stub.ServerLive(pb.ServerLiveRequest())).live  # the connection serves on


async def test_a_cancelled_call_cancels_its_task_and_the_connection_serves_on(
    served: Any,
) -> None:
    _, servicer, target = served
    async with grpc.aio.insecure_channel(target) as channel:
        stub = GRPCInferenceServiceStub(channel)
        call = stub.ModelInfer(_infer(30))
        await asyncio.sleep(0.2)
        call.cancel()
        for _ in range(100):
            if servicer.cancelled:
                break
            await asyncio.sleep(0.02)
        assert servicer.cancelled == 1
        assert servicer.finished == [grpc.StatusCode.CANCELLED]  # counted as grpcio would
        assert (await stub.ServerLive(pb.ServerLiveRequest())).live


async def test_unfinished_requests_are_bounded_per_connection(served: Any) -> None:
    """Six calls each send 3 MB without ending (18 MB, against four messages of the 4 MB limit):
    one that would pass the bound is answered RESOURCE_EXHAUSTED and reset, the others keep
    their place, and the connection still answers a new call."""
    _, servicer, target = served
    host, port = target.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    client = zttp.Connection(zttp.CLIENT, protocol=zttp.HTTP2)
    client.initiate_connection()
    headers = [(b"host", b"x"), (b"content-type", b"application/grpc"), (b"te", b"trailers")]
    infer = b"/inference.GRPCInferenceService/ModelInfer"
    streams = [client.send_request(b"POST", infer, b"2", headers) for _ in range(6)]
    for _ in range(3):
        for stream in streams:
            stream.send_data(b"\0" * 1_000_000)
    ended: dict[int, dict[bytes, bytes]] = {}
    reset: dict[int, int] = {}
    live: int | None = None

    async def exchange() -> None:
        writer.write(client.data_to_send())
        await writer.drain()
        client.receive_data(await reader.read(1 << 20))
        while (event := client.next_event()) is not zttp.NEED_DATA:
            if isinstance(event, zttp.EndOfMessage):
                ended[event.stream_id] = dict(event.trailers)
            elif isinstance(event, zttp.RstStream):
                reset[event.stream_id] = event.error_code

    async with asyncio.timeout(30):
        while not ended or any(s.pending_bytes for s in streams if s.stream_id not in ended):
            await exchange()
        live_stream = client.send_request(b"POST", b"/inference.GRPCInferenceService/ServerLive",
                                          b"2", headers)  # fmt: skip
        live = live_stream.stream_id
        live_stream.send_data(b"\0\0\0\0\0")  # an empty ServerLiveRequest, framed
        live_stream.end_message()
        while live not in ended:
            await exchange()
    writer.close()
    refused = [trailers for sid, trailers in ended.items() if sid != live]
    assert 1 <= len(refused) <= 2
    for trailers in refused:
        assert trailers[b"grpc-status"] == b"8"  # RESOURCE_EXHAUSTED
        assert b"unfinished requests on this connection" in trailers[b"grpc-message"]
        assert f"{UNFINISHED_MESSAGES * (LIMIT + 5)}".encode() in trailers[b"grpc-message"]
    assert all(reset.get(sid) == 0 for sid in ended if sid != live)  # NO_ERROR: stop sending
    assert ended[live][b"grpc-status"] == b"0"
    assert servicer.finished.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == len(refused)


@pytest.mark.parametrize(
    "garbage",
    [PREFACE + b"\x00\x00\x04\x99\x00\x00\x00\x00\x00junk", b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"],
    ids=["broken-frames", "http1"],
)
async def test_a_connection_that_is_not_http2_is_closed_and_others_are_served(
    served: Any, garbage: bytes
) -> None:
    _, _, target = served
    host, port = target.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(garbage)
    await writer.drain()
    async with asyncio.timeout(10):
        while await reader.read(65536):  # the server's SETTINGS / GOAWAY, then the close
            pass
    writer.close()
    async with grpc.aio.insecure_channel(target) as channel:
        stub = GRPCInferenceServiceStub(channel)
        assert (await stub.ServerLive(pb.ServerLiveRequest())).live


async def test_stopping_lets_calls_in_flight_finish_and_refuses_new_ones(served: Any) -> None:
    server, _, target = served
    async with grpc.aio.insecure_channel(target) as channel:
        stub = GRPCInferenceServiceStub(channel)
        in_flight = asyncio.ensure_future(stub.ModelInfer(_infer(0.5)))
        await asyncio.sleep(0.1)
        stopping = asyncio.ensure_future(server.stop(10))
        await asyncio.sleep(0.1)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ServerLive(pb.ServerLiveRequest(), timeout=5)
        assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
        assert (await in_flight).id == "0.5"
        await stopping


async def test_calls_past_the_grace_period_are_cancelled(served: Any) -> None:
    server, servicer, target = served
    async with grpc.aio.insecure_channel(target) as channel:
        stub = GRPCInferenceServiceStub(channel)
        in_flight = asyncio.ensure_future(stub.ModelInfer(_infer(30)))
        await asyncio.sleep(0.2)
        await server.stop(0.2)
        assert servicer.cancelled == 1
        with pytest.raises(grpc.aio.AioRpcError):
            await in_flight
