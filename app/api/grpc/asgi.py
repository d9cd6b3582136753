"""gRPC's wire protocol as an ASGI app: one unary call per HTTP/2 stream, answered by the servicer.

``h2_protocol`` hands each stream to this app on the event loop itself (any ASGI server with
HTTP/2 and response trailers could too). grpc.aio instead runs a poller thread that takes the
GIL for every event and wakes the loop through a socket, three or four thread crossings per
call (README "gRPC").

What the wire carries (grpc's PROTOCOL-HTTP2.md): a POST to ``/<service>/<method>`` with
``content-type: application/grpc[+proto]``; the body is length-prefixed messages, each a
compressed flag and a 4-byte big-endian length; the answer is HEADERS, the length-prefixed
response, then trailers with ``grpc-status`` and ``grpc-message``.
"""

from __future__ import annotations

import asyncio
import struct
import time
import zlib
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any, NoReturn
from urllib.parse import quote

import grpc
from google.protobuf.message import DecodeError, Message

from app.api.grpc.proto import inference_pb2 as pb
from app.api.grpc.servicer import SERVICE, InferenceServicer
from app.api.upload_budget import UploadBudget

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Handler = Callable[[Any, Any], Awaitable[Message]]

PREFIX = struct.Struct(">?I")  # compressed flag, message length
ACCEPTED_ENCODINGS = b"identity,deflate,gzip"
_HEADERS = [
    (b"content-type", b"application/grpc"),
    (b"grpc-accept-encoding", ACCEPTED_ENCODINGS),
]
# grpc-timeout: an integer of at most 8 digits and a unit (PROTOCOL-HTTP2.md)
_TIMEOUT_UNITS = {b"H": 3600.0, b"M": 60.0, b"S": 1.0, b"m": 1e-3, b"u": 1e-6, b"n": 1e-9}
_REQUESTS: dict[str, type[Message]] = {
    "ServerLive": pb.ServerLiveRequest,
    "ServerReady": pb.ServerReadyRequest,
    "ModelReady": pb.ModelReadyRequest,
    "ServerMetadata": pb.ServerMetadataRequest,
    "ModelMetadata": pb.ModelMetadataRequest,
    "ModelInfer": pb.ModelInferRequest,
}


class CallEnded(Exception):
    """The call's status is decided: it goes out in the trailers."""

    def __init__(self, code: grpc.StatusCode, details: str, *, counted: bool = False) -> None:
        super().__init__(details)
        self.code, self.details = code, details
        self.counted = counted  # the servicer already counted and logged the call


class CallContext:
    """What the servicer asks of a call (a subset of ``grpc.aio.ServicerContext``)."""

    __slots__ = ("_metadata", "_peer", "model", "trailing")
    # GrpcAsgiApp counts a call cancelled in its method itself, knowing whether the client
    # went away or the deadline passed (the servicer counts grpcio's)
    app_counts_cancelled_calls = True

    def __init__(self, headers: Iterable[tuple[bytes, bytes]], client: Any) -> None:
        self._metadata = headers
        self._peer = _peer(client)
        self.trailing: tuple[tuple[str, str], ...] = ()
        self.model = ""  # the model the request names, once it is parsed (for the metrics)

    def invocation_metadata(self) -> Iterator[tuple[str, str]]:
        """The client's metadata: its headers but the pseudo, reserved and binary ones
        (decoded as they are read: the servicer looks for one key)."""
        for name, value in self._metadata:
            if not name.startswith((b":", b"grpc-")) and not name.endswith(b"-bin"):
                yield name.decode("latin-1"), value.decode("latin-1")

    def set_trailing_metadata(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self.trailing = metadata

    def peer(self) -> str:
        return self._peer

    async def abort(self, code: grpc.StatusCode, details: str = "") -> NoReturn:
        raise CallEnded(code, details, counted=True)


def _model_of(request: Message) -> str:
    """The model a request names: ModelInfer's ``model_name``, ModelReady's and
    ModelMetadata's ``name``; none for the server's own methods."""
    fields = request.DESCRIPTOR.fields_by_name
    for field in ("model_name", "name"):
        if field in fields:
            return str(getattr(request, field))
    return ""


def _method(path: str) -> str:
    """The call's method as a metric label: a known name, else ``unknown``."""
    method = path.rpartition("/")[2]
    return method if method in _REQUESTS else "unknown"


def _peer(client: Any) -> str:
    """The client's address as grpcio names it: ``ipv4:1.2.3.4:5``, ``ipv6:[::1]:5``."""
    if not client:
        return "unknown"
    host, port = client[0], client[1]
    return f"ipv6:[{host}]:{port}" if ":" in host else f"ipv4:{host}:{port}"


def _timeout_s(value: bytes) -> float:
    unit = _TIMEOUT_UNITS.get(value[-1:])
    digits = value[:-1]
    if unit is None or not digits.isdigit() or len(digits) > 8:
        raise CallEnded(grpc.StatusCode.INVALID_ARGUMENT, f"invalid grpc-timeout {value!r}")
    return int(digits) * unit


def _decompress(payload: bytes, encoding: bytes | None, limit: int) -> bytes:
    """A compressed message in the encoding the call declared, inflated to at most ``limit``."""
    if encoding == b"gzip":
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif encoding == b"deflate":
        inflater = zlib.decompressobj()
    else:
        raise CallEnded(
            grpc.StatusCode.UNIMPLEMENTED,
            f"a compressed message in encoding {(encoding or b'identity').decode('latin-1')!r}; "
            f"accepted: {ACCEPTED_ENCODINGS.decode()}",
        )
    try:
        message = inflater.decompress(payload, limit + 1)
    except zlib.error as exc:
        raise CallEnded(grpc.StatusCode.INTERNAL, f"cannot decompress the message: {exc}") from exc
    if len(message) > limit:
        raise CallEnded(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"the decompressed message is larger than the limit of {limit} bytes",
        )
    return message


def _unframe(body: bytes, encoding: bytes | None, limit: int) -> bytes:
    """The one message of a unary call."""
    if len(body) < PREFIX.size:
        raise CallEnded(grpc.StatusCode.INTERNAL, "the request carries no complete message")
    compressed, length = PREFIX.unpack_from(body)
    if len(body) != PREFIX.size + length:
        raise CallEnded(
            grpc.StatusCode.INTERNAL,
            f"the request body is {len(body) - PREFIX.size} bytes after its prefix, "
            f"which declares one message of {length}",
        )
    payload = body[PREFIX.size :]
    return _decompress(payload, encoding, limit) if compressed else payload


class GrpcAsgiApp:
    """Answers ``inference.GRPCInferenceService`` over ASGI with ``servicer``."""

    def __init__(
        self,
        servicer: InferenceServicer,
        max_message_bytes: int,
        budget: UploadBudget | None = None,
    ) -> None:
        self._servicer = servicer
        self._limit = max_message_bytes
        # the process's bound on request bytes held at once, shared with HTTP (the server
        # takes from it as each call's body arrives)
        self.budget = budget or UploadBudget(1 << 62)
        self.most_body_bytes = PREFIX.size + max_message_bytes  # one framed message
        self._draining = False
        self._handlers: dict[bytes, tuple[type[Message], Handler]] = {
            f"/{SERVICE}/{name}".encode(): (request, getattr(servicer, name))
            for name, request in _REQUESTS.items()
        }

    def refusal(
        self, path: str, headers: Iterable[tuple[bytes, bytes]], client: Any, details: str
    ) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
        """Count a call the connection refuses before this app reads it (RESOURCE_EXHAUSTED),
        and give its answer's headers and trailers."""
        code = grpc.StatusCode.RESOURCE_EXHAUSTED
        context = CallContext(headers, client)
        self._servicer.finish(_method(path), "", context, code, time.perf_counter())
        return _HEADERS, _trailers(code, details)

    def drain(self) -> None:
        """From now on answer UNAVAILABLE: a client retries on another replica."""
        self._draining = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # no lifespan: the app's own lifespan runs this server
        headers = dict(scope["headers"])
        content_type = headers.get(b"content-type", b"")
        if scope["method"] != "POST" or not content_type.startswith(b"application/grpc"):
            await _plain_error(send, 415, b"a gRPC server: POST application/grpc only")
            return
        started = time.perf_counter()
        context = CallContext(scope["headers"], scope.get("client"))
        try:
            response = await self._answer(scope, headers, receive, context)
            message = response.SerializeToString()
            if len(message) > self._limit:
                raise CallEnded(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"the response ({len(message)} bytes) is larger than the limit of "
                    f"{self._limit}; ask for less in one call",
                    counted=True,  # as OK: grpcio's server also fails it after the method
                )
        except CallEnded as ended:
            if not ended.counted:  # refused before the servicer saw it, or its deadline passed
                self._servicer.finish(
                    _method(scope["path"]), context.model, context, ended.code, started
                )
            await _finish(send, b"", ended.code, ended.details, context.trailing)
        except asyncio.CancelledError:  # the client reset the call, or the server's grace ended
            code = grpc.StatusCode.CANCELLED
            self._servicer.finish(_method(scope["path"]), context.model, context, code, started)
            raise
        else:
            framed = PREFIX.pack(False, len(message)) + message
            await _finish(send, framed, grpc.StatusCode.OK, "", context.trailing)

    async def _answer(
        self, scope: Scope, headers: dict[bytes, bytes], receive: Receive, context: CallContext
    ) -> Message:
        method = self._handlers.get(scope["raw_path"])
        if method is None:
            raise CallEnded(grpc.StatusCode.UNIMPLEMENTED, f"unknown method {scope['path']}")
        if self._draining:
            raise CallEnded(grpc.StatusCode.UNAVAILABLE, "the server is shutting down")
        body = await self._read_body(receive)
        payload = _unframe(body, headers.get(b"grpc-encoding"), self._limit)
        request_type, handler = method
        try:
            request = request_type.FromString(payload)
        except DecodeError as exc:
            raise CallEnded(grpc.StatusCode.INTERNAL, f"cannot parse the request: {exc}") from exc
        context.model = _model_of(request)
        timeout = headers.get(b"grpc-timeout")
        if timeout is None:
            return await handler(request, context)
        try:
            async with asyncio.timeout(_timeout_s(timeout)):
                return await handler(request, context)
        except TimeoutError as exc:
            raise CallEnded(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded") from exc

    async def _read_body(self, receive: Receive) -> bytes:
        """The request body, refused once it outgrows one message of the size limit."""
        parts: list[bytes] = []
        size, most = 0, self.most_body_bytes
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise CallEnded(grpc.StatusCode.CANCELLED, "the client went away")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > most:
                raise CallEnded(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"Received message larger than max ({size - PREFIX.size} vs. {self._limit})",
                )
            parts.append(chunk)
            if not message.get("more_body", False):
                return parts[0] if len(parts) == 1 else b"".join(parts)


def _trailers(
    code: grpc.StatusCode, details: str, metadata: tuple[tuple[str, str], ...] = ()
) -> list[tuple[bytes, bytes]]:
    trailers = [(b"grpc-status", str(code.value[0]).encode())]
    if details:  # percent-encoded, as the protocol asks
        trailers.append((b"grpc-message", quote(details, safe=" ").encode()))
    trailers.extend((name.encode(), value.encode()) for name, value in metadata)
    return trailers


async def _finish(
    send: Send,
    framed: bytes,
    code: grpc.StatusCode,
    details: str,
    metadata: tuple[tuple[str, str], ...],
) -> None:
    trailers = _trailers(code, details, metadata)
    start = {"type": "http.response.start", "status": 200, "headers": _HEADERS, "trailers": True}
    await send(start)
    await send({"type": "http.response.body", "body": framed})
    await send({"type": "http.response.trailers", "headers": trailers})


async def _plain_error(send: Send, status: int, text: bytes) -> None:
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(text)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": text})
