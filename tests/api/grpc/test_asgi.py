"""gRPC's wire protocol over ASGI, without a server: framing, compression, deadlines, limits,
and the status each refusal gets (the real server is driven by tritonclient in test_grpc.py)."""

from __future__ import annotations

import asyncio
import gzip
import struct
import zlib
from typing import Any
from urllib.parse import unquote

import grpc
import pytest

from app.api.grpc.asgi import CallContext, CallEnded, GrpcAsgiApp
from app.api.grpc.proto import inference_pb2 as pb

pytestmark = pytest.mark.anyio
LIMIT = 1000
LIVE = "/inference.GRPCInferenceService/ServerLive"
INFER = "/inference.GRPCInferenceService/ModelInfer"


class FakeServicer:
    """Answers ServerLive at once and ModelInfer after ``delay_s``; records what it saw."""

    def __init__(self, delay_s: float = 0.0, answer_bytes: int = 0) -> None:
        self.delay_s, self.answer_bytes = delay_s, answer_bytes
        self.seen: list[Any] = []
        self.finished: list[tuple[str, grpc.StatusCode]] = []
        self.models: list[str] = []  # the model label of each finished call

    async def ServerLive(self, request: pb.ServerLiveRequest, context: CallContext) -> Any:
        self.seen.append((request, context.invocation_metadata(), context.peer()))
        context.set_trailing_metadata((("x-request-id", "abc"),))
        return pb.ServerLiveResponse(live=True)

    async def ModelInfer(self, request: pb.ModelInferRequest, context: CallContext) -> Any:
        self.seen.append(request)
        if request.model_name == "refuse":
            await context.abort(grpc.StatusCode.NOT_FOUND, "no model 'refuse' here; 100%")
        await asyncio.sleep(self.delay_s)
        return pb.ModelInferResponse(model_name="x" * self.answer_bytes)

    def __getattr__(self, name: str) -> Any:  # the other methods: never called here
        async def unused(request: Any, context: CallContext) -> Any:
            raise AssertionError(name)

        return unused

    def finish(self, method: str, model: str, context: Any, code: Any, started: float) -> None:
        self.finished.append((method, code))
        self.models.append(model)


def frame(message: bytes, compressed: bool = False) -> bytes:
    return struct.pack(">?I", compressed, len(message)) + message


async def call(
    app: GrpcAsgiApp,
    path: str,
    body_parts: list[bytes],
    headers: dict[bytes, bytes] | None = None,
    method: str = "POST",
) -> dict[str, Any]:
    """The answer: HTTP status, headers, body, and trailers as a dict (grpc-message decoded)."""
    all_headers = {b"content-type": b"application/grpc", b"te": b"trailers", **(headers or {})}
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "headers": list(all_headers.items()),
        "client": ("127.0.0.1", 5000),
    }
    parts = list(body_parts) or [b""]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if not parts:
            await asyncio.sleep(3600)
        body = parts.pop(0)
        return {"type": "http.request", "body": body, "more_body": bool(parts)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    answer: dict[str, Any] = {"status": sent[0]["status"], "headers": dict(sent[0]["headers"])}
    answer["body"] = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    trailers = [m for m in sent if m["type"] == "http.response.trailers"]
    if trailers:
        answer["trailers"] = {k.decode(): v.decode() for k, v in trailers[0]["headers"]}
        if "grpc-message" in answer["trailers"]:
            answer["trailers"]["grpc-message"] = unquote(answer["trailers"]["grpc-message"])
    return answer


def status(answer: dict[str, Any]) -> grpc.StatusCode:
    value = int(answer["trailers"]["grpc-status"])
    return next(code for code in grpc.StatusCode if code.value[0] == value)


async def test_a_call_is_answered_with_one_framed_message_and_trailers() -> None:
    servicer = FakeServicer()
    app = GrpcAsgiApp(servicer, LIMIT)  # type: ignore[arg-type]
    body = frame(pb.ServerLiveRequest().SerializeToString())
    headers = {b"x-request-id": b"abc", b"grpc-timeout": b"5S", b"trace-bin": b"\x00"}
    answer = await call(app, LIVE, [body[:3], body[3:]], headers)  # the body in two pieces
    assert answer["status"] == 200
    assert answer["headers"][b"content-type"] == b"application/grpc"
    assert answer["trailers"] == {"grpc-status": "0", "x-request-id": "abc"}
    compressed, length = struct.unpack(">?I", answer["body"][:5])
    assert not compressed and length == len(answer["body"]) - 5
    assert pb.ServerLiveResponse.FromString(answer["body"][5:]).live is True
    _, metadata, peer = servicer.seen[0]
    # the client's metadata: no pseudo, reserved (grpc-*) or binary (-bin) headers
    assert dict(metadata) == {
        "content-type": "application/grpc",
        "te": "trailers",
        "x-request-id": "abc",
    }
    assert peer == "ipv4:127.0.0.1:5000"


@pytest.mark.parametrize("encoding", [b"gzip", b"deflate"])
async def test_compressed_requests_are_inflated(encoding: bytes) -> None:
    servicer = FakeServicer()
    app = GrpcAsgiApp(servicer, LIMIT)  # type: ignore[arg-type]
    message = pb.ModelInferRequest(model_name="cnn", id="7").SerializeToString()
    packed = gzip.compress(message) if encoding == b"gzip" else zlib.compress(message)
    answer = await call(app, INFER, [frame(packed, True)], {b"grpc-encoding": encoding})
    assert status(answer) is grpc.StatusCode.OK
    assert servicer.seen[0].model_name == "cnn"


@pytest.mark.parametrize(
    ("path", "body", "headers", "code", "says"),
    [
        ("/inference.GRPCInferenceService/Nope", frame(b""), {}, "UNIMPLEMENTED", "unknown method"),
        (LIVE, b"\x00\x00", {}, "INTERNAL", "no complete message"),
        (LIVE, frame(b"") + b"x", {}, "INTERNAL", "declares one message of 0"),
        (LIVE, frame(b"\xff\xff"), {}, "INTERNAL", "cannot parse the request"),
        (LIVE, frame(b"x" * (LIMIT + 1)), {}, "RESOURCE_EXHAUSTED", "larger than max"),
        (LIVE, frame(b"zz", True), {}, "UNIMPLEMENTED", "encoding 'identity'"),
        (LIVE, frame(b"zz", True), {b"grpc-encoding": b"snappy"}, "UNIMPLEMENTED", "snappy"),
        (LIVE, frame(b"zz", True), {b"grpc-encoding": b"gzip"}, "INTERNAL", "decompress"),
        (
            LIVE,
            frame(gzip.compress(b"\x00" * (LIMIT + 1)), True),
            {b"grpc-encoding": b"gzip"},
            "RESOURCE_EXHAUSTED",
            "decompressed message is larger",
        ),
        (LIVE, frame(b""), {b"grpc-timeout": b"soon"}, "INVALID_ARGUMENT", "grpc-timeout"),
        (LIVE, frame(b""), {b"grpc-timeout": b"123456789S"}, "INVALID_ARGUMENT", "grpc-timeout"),
    ],
    ids=[
        "method",
        "short",
        "long",
        "protobuf",
        "limit",
        "no-encoding",
        "unknown-encoding",
        "bad-gzip",
        "gzip-bomb",
        "timeout-unit",
        "timeout-digits",
    ],
)
async def test_malformed_calls_get_a_status_not_a_crash(
    path: str, body: bytes, headers: dict[bytes, bytes], code: str, says: str
) -> None:
    servicer = FakeServicer()
    app = GrpcAsgiApp(servicer, LIMIT)  # type: ignore[arg-type]
    answer = await call(app, path, [body], headers)
    assert answer["status"] == 200 and answer["body"] == b""
    assert status(answer) is grpc.StatusCode[code]
    assert says in answer["trailers"]["grpc-message"]
    method = path.rpartition("/")[2]
    assert servicer.finished == [(method if method != "Nope" else "unknown", grpc.StatusCode[code])]


async def test_the_servicers_abort_becomes_the_status_and_is_counted_once() -> None:
    servicer = FakeServicer()
    app = GrpcAsgiApp(servicer, LIMIT)  # type: ignore[arg-type]
    request = frame(pb.ModelInferRequest(model_name="refuse").SerializeToString())
    answer = await call(app, INFER, [request])
    assert status(answer) is grpc.StatusCode.NOT_FOUND
    # percent-encoded on the wire, as the protocol asks; decoded by the client
    assert answer["trailers"]["grpc-message"] == "no model 'refuse' here; 100%"
    assert servicer.finished == []  # the servicer counts its own aborts (the real one does)


async def test_a_deadline_ends_the_call_and_is_counted_under_its_model() -> None:
    servicer = FakeServicer(delay_s=5)
    app = GrpcAsgiApp(servicer, LIMIT)  # type: ignore[arg-type]
    request = frame(pb.ModelInferRequest(model_name="cnn").SerializeToString())
    answer = await call(app, INFER, [request], {b"grpc-timeout": b"50m"})
    assert status(answer) is grpc.StatusCode.DEADLINE_EXCEEDED
    assert servicer.finished == [("ModelInfer", grpc.StatusCode.DEADLINE_EXCEEDED)]
    assert servicer.models == ["cnn"]


async def test_a_call_cancelled_in_its_method_is_counted_under_its_model() -> None:
    servicer = FakeServicer(delay_s=5)
    app = GrpcAsgiApp(servicer, LIMIT)  # type: ignore[arg-type]
    request = frame(pb.ModelInferRequest(model_name="cnn").SerializeToString())
    task = asyncio.create_task(call(app, INFER, [request]))
    while not servicer.seen:  # the method is running
        await asyncio.sleep(0.01)
    task.cancel()  # what the server does when the client resets the stream
    with pytest.raises(asyncio.CancelledError):
        await task
    assert servicer.finished == [("ModelInfer", grpc.StatusCode.CANCELLED)]
    assert servicer.models == ["cnn"]


async def test_an_answer_over_the_limit_is_refused() -> None:
    app = GrpcAsgiApp(FakeServicer(answer_bytes=LIMIT), LIMIT)  # type: ignore[arg-type]
    request = frame(pb.ModelInferRequest(model_name="cnn").SerializeToString())
    answer = await call(app, INFER, [request])
    assert status(answer) is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than the limit of 1000" in answer["trailers"]["grpc-message"]


async def test_a_draining_server_answers_unavailable() -> None:
    app = GrpcAsgiApp(FakeServicer(), LIMIT)  # type: ignore[arg-type]
    app.drain()
    answer = await call(app, LIVE, [frame(b"")])
    assert status(answer) is grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize(
    ("method", "content_type"), [("GET", b"application/grpc"), ("POST", b"application/json")]
)
async def test_what_is_not_grpc_gets_415(method: str, content_type: bytes) -> None:
    app = GrpcAsgiApp(FakeServicer(), LIMIT)  # type: ignore[arg-type]
    answer = await call(app, LIVE, [b"{}"], {b"content-type": content_type}, method=method)
    assert answer["status"] == 415 and "trailers" not in answer


async def test_a_client_that_goes_away_cancels_the_call() -> None:
    servicer = FakeServicer()
    app = GrpcAsgiApp(servicer, LIMIT)  # type: ignore[arg-type]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": LIVE,
        "raw_path": LIVE.encode(),
        "headers": [(b"content-type", b"application/grpc")],
        "client": None,
    }
    await app(scope, receive, send)
    assert sent[-1]["headers"][0] == (b"grpc-status", b"1")  # CANCELLED
    assert servicer.models == [""]  # nothing was read that could name a model


@pytest.mark.parametrize(
    ("client", "peer"),
    [(("10.0.0.1", 7), "ipv4:10.0.0.1:7"), (("::1", 8, 0, 0), "ipv6:[::1]:8"), (None, "unknown")],
)
def test_the_peer_is_named_as_grpcio_names_it(client: Any, peer: str) -> None:
    assert CallContext([], client).peer() == peer


def test_call_ended_carries_code_and_details() -> None:
    ended = CallEnded(grpc.StatusCode.NOT_FOUND, "gone")
    assert (ended.code, ended.details, ended.counted) == (grpc.StatusCode.NOT_FOUND, "gone", False)
