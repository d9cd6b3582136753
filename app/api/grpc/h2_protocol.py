"""A lean HTTP/2 server protocol for unary gRPC calls, on zttp's compiled HTTP/2 codec.

uvicorn's HTTP/2 protocol serves any ASGI app: per stream it builds a full scope, an
``asyncio.Event``, flow-control bookkeeping and a receive/send state machine, and writes each
ASGI message as it comes. A unary gRPC call needs less: its whole request body, then headers,
one message and trailers. So this protocol collects a stream's body, runs the ASGI app
(``GrpcAsgiApp``) once the body is complete, with a receive that hands it over at once, and
sends the answer's frames together. zttp keeps the connection's state: SETTINGS, PING,
flow-control windows, stream resets and GOAWAY.

zttp caps a connection at 128 open streams (it refuses more with REFUSED_STREAM) and grants
flow-control credit as data arrives, so unfinished requests could hold 128 times the message
limit per connection (2.5 GiB at the default 20 MiB). The bytes held for them are bounded
instead (``UNFINISHED_MESSAGES`` messages' worth), and every byte of a request is also taken
from the process's upload budget (app/api/upload_budget.py, shared with HTTP) until its call is
answered: a stream whose data would pass either bound is answered RESOURCE_EXHAUSTED at once and
reset, like a message over the limit.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import zttp

from app.api.grpc.asgi import GrpcAsgiApp
from app.errors import Overloaded
from app.write_coalescing import CoalescingTransport

logger = logging.getLogger(__name__)
# Unfinished requests one connection may hold, in messages of the size limit: concurrent
# uploads of large tensors pass, a client that opens streams and never ends them does not.
UNFINISHED_MESSAGES = 4


class _Call:
    """One stream: its request so far, and the task that answers it."""

    __slots__ = ("body", "headers", "method", "path", "size", "task")

    def __init__(self, request: zttp.Request) -> None:
        self.headers = request.headers
        self.method = request.method
        self.path = request.path
        self.body: list[bytes] = []
        self.size = 0
        self.task: asyncio.Task[None] | None = None


def _header_list(call: _Call) -> list[tuple[bytes, bytes]]:
    """The request's headers as ASGI lists them (names in lower case)."""
    if isinstance(call.headers, zttp.HeaderBlock):
        return call.headers.to_list(lowercase_names=True)
    return [(name.lower(), value) for name, value in call.headers]


class GrpcH2Protocol(asyncio.Protocol):
    """One client connection; ``calls_in_flight`` holds every connection's answering tasks
    (the server waits for them when it stops)."""

    def __init__(
        self,
        app: GrpcAsgiApp,
        most_body_bytes: int,
        connections: set[GrpcH2Protocol],
        calls_in_flight: set[asyncio.Task[None]],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._app = app
        self._most = most_body_bytes
        self._connections = connections
        self._in_flight = calls_in_flight
        self._loop = loop
        self._conn = zttp.Connection(zttp.SERVER, protocol=zttp.HTTP2)
        self._calls: dict[int, _Call] = {}
        self._unfinished_bytes = 0  # body bytes held for calls not yet answered
        self._most_unfinished = UNFINISHED_MESSAGES * most_body_bytes
        self._transport: Any = None
        self._client: Any = None
        self._closing = False

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = CoalescingTransport(transport, self._loop)  # type: ignore[arg-type]
        self._client = transport.get_extra_info("peername")
        self._connections.add(self)
        self._conn.initiate_connection()
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.discard(self)
        for call in self._calls.values():
            if call.task is not None:
                call.task.cancel()  # its task gives its bytes back
            else:
                self._app.budget.give_back(call.size)
        self._calls.clear()

    def data_received(self, data: bytes) -> None:
        try:
            self._conn.receive_data(data)
            self._handle_events()
        except zttp.ProtocolError as exc:
            logger.info("gRPC: closing a connection that broke HTTP/2: %s", exc)
            self._flush()
            self._transport.close()
            return
        self._flush()
        self._close_if_done()  # a window update may have let the last answer out

    # -- streams ------------------------------------------------------------------------------

    def _handle_events(self) -> None:
        conn, calls = self._conn, self._calls
        while (event := conn.next_event()) is not zttp.NEED_DATA:
            if isinstance(event, zttp.Data):
                call = calls.get(event.stream_id)
                if call is not None and call.task is None:
                    refusal = self._over_bounds(len(event.data))
                    if refusal is not None:
                        self._refuse(event.stream_id, call, refusal)
                        continue
                    call.body.append(event.data)
                    call.size += len(event.data)
                    self._unfinished_bytes += len(event.data)
                    if call.size > self._most:  # answered now: the rest is not kept
                        self._answer(event.stream_id, call, more_body=True)
            elif isinstance(event, zttp.Request):
                calls[event.stream_id] = _Call(event)
                if event.end_stream:
                    self._answer(event.stream_id, calls[event.stream_id], more_body=False)
            elif isinstance(event, zttp.EndOfMessage):
                call = calls.get(event.stream_id)
                if call is not None and call.task is None:
                    self._answer(event.stream_id, call, more_body=False)
            elif isinstance(event, zttp.RstStream):
                call = calls.pop(event.stream_id, None)
                if call is not None and call.task is not None:
                    call.task.cancel()
                elif call is not None:  # given up while its body was coming in
                    self._unfinished_bytes -= call.size
                    self._app.budget.give_back(call.size)
            elif isinstance(event, zttp.GoAway):
                self.shutdown()

    def _answer(self, stream_id: int, call: _Call, more_body: bool) -> None:
        self._unfinished_bytes -= call.size  # the body is the call's now
        task = self._loop.create_task(self._run(stream_id, call, more_body))
        call.task = task
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _run(self, stream_id: int, call: _Call, more_body: bool) -> None:
        body = b"".join(call.body) if len(call.body) != 1 else call.body[0]
        call.body = []
        headers = _header_list(call)
        path = call.path.decode("latin-1")
        scope = {
            "type": "http",
            "http_version": "2",
            "method": call.method.decode("latin-1"),
            "path": path,
            "raw_path": call.path,
            "headers": headers,
            "client": self._client,
        }
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if delivered:
                await asyncio.Future()  # a unary call has no more to give: wait to be cancelled
            delivered = True
            return {"type": "http.request", "body": body, "more_body": more_body}

        answer: dict[str, Any] = {}

        async def send(message: dict[str, Any]) -> None:
            kind = message["type"]
            if kind == "http.response.start":
                answer["status"], answer["headers"] = message["status"], message["headers"]
                answer["trailers"] = message.get("trailers", False)
                answer["body"] = []
            elif kind == "http.response.body":
                if message.get("body"):
                    answer["body"].append(message["body"])
                if not answer["trailers"]:
                    self._respond(stream_id, answer, None, more_body)
            elif kind == "http.response.trailers":
                self._respond(stream_id, answer, message["headers"], more_body)

        try:
            await self._app(scope, receive, send)
        finally:
            self._app.budget.give_back(call.size)
            if self._calls.get(stream_id) is call:
                del self._calls[stream_id]
            self._close_if_done()

    def _over_bounds(self, size: int) -> str | None:
        """Take ``size`` more request bytes from both bounds, or say why they do not fit."""
        if self._unfinished_bytes + size > self._most_unfinished:
            return (
                "too many bytes in unfinished requests on this connection (at most "
                f"{self._most_unfinished}); finish or cancel calls before starting more"
            )
        try:
            self._app.budget.take(size)
        except Overloaded as exc:
            return exc.detail
        return None

    def _refuse(self, stream_id: int, call: _Call, details: str) -> None:
        """Answer a call whose data would pass a bound: RESOURCE_EXHAUSTED, counted and
        logged as any call, then reset (NO_ERROR) so the client stops sending; what it sent is
        dropped."""
        del self._calls[stream_id]
        self._unfinished_bytes -= call.size
        self._app.budget.give_back(call.size)
        path = call.path.decode("latin-1")
        headers, trailers = self._app.refusal(path, _header_list(call), self._client, details)
        stream = self._conn.stream(stream_id)
        try:
            stream.send_response(200, headers)
            stream.end_message(trailers)
            stream.reset(zttp.H2ErrorCode.NO_ERROR)
        except zttp.LocalProtocolError as exc:  # the stream closed under us
            logger.info("gRPC: could not refuse stream %d: %s", stream_id, exc)

    def _respond(self, stream_id: int, answer: dict[str, Any], trailers: Any, unread: bool) -> None:
        """Send the answer; ``unread``: the client is still sending a request refused early,
        so ask it to stop (RST_STREAM NO_ERROR after a complete answer, RFC 9113 8.1)."""
        if stream_id not in self._calls or self._transport.is_closing():
            return  # reset by the client, or the connection is gone
        stream = self._conn.stream(stream_id)
        try:
            stream.send_response(answer["status"], answer["headers"])
            for chunk in answer["body"]:
                stream.send_data(chunk)
            stream.end_message(trailers)
            if unread:
                stream.reset(zttp.H2ErrorCode.NO_ERROR)
        except zttp.LocalProtocolError as exc:  # the stream closed under us
            logger.info("gRPC: could not answer stream %d: %s", stream_id, exc)
        self._flush()

    # -- the connection -----------------------------------------------------------------------

    def _flush(self) -> None:
        data = self._conn.data_to_send()
        if data:
            self._transport.write(data)

    def _close_if_done(self) -> None:
        """After ``shutdown``: GOAWAY and close once every call is answered and every answer
        has left (a large one may wait for the client's flow-control window)."""
        if not self._closing or self._calls or self._conn.has_pending_send():
            return
        if self._transport is None or self._transport.is_closing():
            return
        self._conn.close()
        self._flush()
        self._transport.close()

    def close_now(self) -> None:
        """Close whatever is left (the server's grace period is over)."""
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    def shutdown(self) -> None:
        """Close once the calls in flight are answered (GOAWAY, then the socket)."""
        self._closing = True
        self._close_if_done()
