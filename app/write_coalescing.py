"""One socket write per event-loop turn instead of one per piece of a response.

uvicorn's protocols write each ASGI message as it comes: an HTTP/2 gRPC answer is three writes
(headers, the message, the trailers), an HTTP/1.1 answer two (head, body), each a system call
of its own on the event loop. ``CoalescingTransport`` collects what is written during one turn
of the loop and hands it to the socket in one write when the turn's callbacks are done, so the
pieces of one answer, and of the answers finished in the same turn, leave together.
"""

from __future__ import annotations

import asyncio
from typing import Any


class CoalescingTransport:
    """Wraps a transport: ``write`` buffers until the next loop turn; everything else is the
    wrapped transport's (closing flushes first, aborting drops the buffer)."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)  # type: ignore[arg-type]

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if not pending or self._transport.is_closing():
            return
        self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._pending = []
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
