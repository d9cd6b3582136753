"""One socket write per event-loop turn instead of one per piece of an answer.

uvicorn's HTTP/1.1 protocol writes each ASGI message as it comes: a response's head, then its
body, each a system call of its own on the event loop (a costly one in a virtual machine).
``CoalescingTransport`` wraps the connection's transport (``asyncio.Transport``'s public
interface, by composition) and hands what was written during one turn of the loop to the
socket in one write once the turn's callbacks are done: the head and body of an answer, and the
answers finished in the same turn, leave together. The connection guard
(app/api/connections.py) gives it to uvicorn's protocol in place of the raw transport.
"""

from __future__ import annotations

import asyncio
from typing import Any


class CoalescingTransport:
    """``write`` buffers until the next loop turn; everything else is the wrapped transport's
    (closing flushes first, aborting drops what is buffered)."""

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
        self._pending.append(bytes(data))

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if pending and not self._transport.is_closing():
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
