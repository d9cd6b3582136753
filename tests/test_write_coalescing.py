"""The pieces written during one loop turn leave in one write, in order, and nothing is lost or
sent after the transport closed; HTTP/1.1 answers through the protocol arrive whole."""

from __future__ import annotations

import asyncio
import socket

import pytest

from app.write_coalescing import CoalescingHttpToolsProtocol, CoalescingTransport

pytestmark = pytest.mark.anyio


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = self.aborted = self.eof = False
        self.extra = {"peername": ("127.0.0.1", 1)}

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def write_eof(self) -> None:
        self.eof = True

    def get_write_buffer_size(self) -> int:
        return 7

    def get_extra_info(self, name: str) -> object:
        return self.extra.get(name)


def _wrapped() -> tuple[CoalescingTransport, RecordingTransport]:
    inner = RecordingTransport()
    return CoalescingTransport(inner, asyncio.get_running_loop()), inner  # type: ignore[arg-type]


async def test_one_turns_writes_leave_together_in_order() -> None:
    transport, inner = _wrapped()
    transport.write(b"head ")
    transport.write(b"")  # nothing to send: no empty write either
    transport.writelines([bytearray(b"body "), memoryview(b"trailers")])
    assert inner.writes == []
    assert transport.get_write_buffer_size() == 7 + len(b"head body trailers")
    await asyncio.sleep(0)
    assert inner.writes == [b"head body trailers"]
    transport.write(b"next turn")
    await asyncio.sleep(0)
    assert inner.writes == [b"head body trailers", b"next turn"]


async def test_close_and_write_eof_flush_first_and_abort_drops() -> None:
    transport, inner = _wrapped()
    transport.write(b"last words")
    transport.close()
    assert inner.writes == [b"last words"] and inner.closed
    transport.write(b"too late")  # the scheduled flush finds the transport closing
    await asyncio.sleep(0)
    assert inner.writes == [b"last words"]

    transport, inner = _wrapped()
    transport.write(b"half")
    transport.write_eof()
    assert inner.writes == [b"half"] and inner.eof

    transport, inner = _wrapped()
    transport.write(b"never")
    transport.abort()
    await asyncio.sleep(0)
    assert inner.writes == [] and inner.aborted


async def test_everything_else_is_the_wrapped_transports() -> None:
    transport, inner = _wrapped()
    assert transport.get_extra_info("peername") == ("127.0.0.1", 1)
    assert transport.is_closing() is False
    inner.closed = True
    assert transport.is_closing() is True


async def test_http_answers_arrive_whole_through_the_protocol() -> None:
    """A real uvicorn server with the protocol: keep-alive answers, one after another."""
    import uvicorn

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        body = scope["path"].encode() * 1000
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, http=CoalescingHttpToolsProtocol, log_config=None, lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        reader, writer = await asyncio.open_connection(*sock.getsockname())
        for path in ("/a", "/bc"):
            writer.write(f"GET {path} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK")
            assert await reader.readexactly(len(path) * 1000) == path.encode() * 1000
        writer.close()
    finally:
        server.should_exit = True
        await task
