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
from app.api.upload_budget import UploadBudget

pytestmark = [pytest.mark.anyio, pytest.mark.integration]
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


HEADERS = [(b"host", b"x"), (b"content-type", b"application/grpc"), (b"te", b"trailers")]
INFER_PATH = b"/inference.GRPCInferenceService/ModelInfer"


class RawClient:
    """HTTP/2 by hand (zttp's client side), to send request bodies that never end."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.conn = zttp.Connection(zttp.CLIENT, protocol=zttp.HTTP2)
        self.conn.initiate_connection()
        self.ended: dict[int, dict[bytes, bytes]] = {}  # stream id -> trailers
        self.reset: dict[int, int] = {}  # stream id -> error code

    @classmethod
    async def connect(cls, target: str) -> RawClient:
        host, port = target.split(":")
        return cls(*await asyncio.open_connection(host, int(port)))

    def open(self, path: bytes = INFER_PATH) -> Any:
        return self.conn.send_request(b"POST", path, b"2", HEADERS)

    async def exchange(self) -> None:
        self.writer.write(self.conn.data_to_send())
        await self.writer.drain()
        self.conn.receive_data(await self.reader.read(1 << 20))
        while (event := self.conn.next_event()) is not zttp.NEED_DATA:
            if isinstance(event, zttp.EndOfMessage):
                self.ended[event.stream_id] = dict(event.trailers)
            elif isinstance(event, zttp.RstStream):
                self.reset[event.stream_id] = event.error_code

    async def send_all(self, streams: list[Any]) -> None:
        """Exchange frames until every stream has sent its data or been answered."""
        while any(s.pending_bytes for s in streams if s.stream_id not in self.ended):
            await self.exchange()
        self.writer.write(self.conn.data_to_send())  # what the last credit let out
        await self.writer.drain()

    async def live(self) -> bytes:
        """A ServerLive call on this connection: its grpc-status."""
        stream = self.open(b"/inference.GRPCInferenceService/ServerLive")
        stream.send_data(b"\0\0\0\0\0")  # an empty ServerLiveRequest, framed
        stream.end_message()
        while stream.stream_id not in self.ended:
            await self.exchange()
        return self.ended[stream.stream_id][b"grpc-status"]

    def close(self) -> None:
        self.writer.close()


async def test_unfinished_requests_are_bounded_per_connection(served: Any) -> None:
    """Six calls each send 3 MB without ending (18 MB, against four messages of the 4 MB limit):
    one that would pass the bound is answered RESOURCE_EXHAUSTED and reset, the others keep
    their place, and the connection still answers a new call."""
    _, servicer, target = served
    client = await RawClient.connect(target)
    streams = [client.open() for _ in range(6)]
    for _ in range(3):
        for stream in streams:
            stream.send_data(b"\0" * 1_000_000)
    async with asyncio.timeout(30):
        while not client.ended:
            await client.exchange()
        await client.send_all(streams)
        assert await client.live() == b"0"
    client.close()
    refused = [client.ended[s.stream_id] for s in streams if s.stream_id in client.ended]
    assert 1 <= len(refused) <= 2
    for trailers in refused:
        assert trailers[b"grpc-status"] == b"8"  # RESOURCE_EXHAUSTED
        assert b"unfinished requests on this connection" in trailers[b"grpc-message"]
        assert f"{UNFINISHED_MESSAGES * (LIMIT + 5)}".encode() in trailers[b"grpc-message"]
    assert all(client.reset.get(s.stream_id) == 0 for s in streams if s.stream_id in client.ended)
    assert servicer.finished.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == len(refused)


async def test_request_bytes_come_from_the_process_budget_and_go_back(served: Any) -> None:
    """Two connections each hold 3 MB of an unfinished call against a 5 MB budget: the second
    is refused with the budget's reason; once the first connection closes and the calls are
    answered, every byte is back."""
    server, _, target = served
    budget = server._app.budget = UploadBudget(5_000_000)
    first, second = await RawClient.connect(target), await RawClient.connect(target)
    held, refused = first.open(), second.open()
    for _ in range(3):
        held.send_data(b"\0" * 1_000_000)
        refused.send_data(b"\0" * 1_000_000)
    async with asyncio.timeout(30):
        await first.send_all([held])
        while budget.held < 3_000_000:  # sent; arriving
            await asyncio.sleep(0.01)
        assert budget.held == 3_000_000
        while refused.stream_id not in second.ended:
            await second.exchange()
        trailers = second.ended[refused.stream_id]
        assert trailers[b"grpc-status"] == b"8"
        assert b"TORCHGATE_MAX_UPLOAD_BYTES_IN_FLIGHT" in trailers[b"grpc-message"]
        assert await second.live() == b"0"  # small calls still fit
        first.close()
        while budget.held:
            await asyncio.sleep(0.01)
        async with grpc.aio.insecure_channel(target) as channel:
            stub = GRPCInferenceServiceStub(channel)
            assert (await stub.ModelInfer(_infer(0, 10))).model_name == "x" * 10
    second.close()
    assert budget.held == 0


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
