"""One socket write per loop turn: what is written in a turn leaves together, in order."""

from __future__ import annotations

import asyncio

import pytest

from app.api.coalescing import CoalescingTransport

pytestmark = pytest.mark.anyio


class _Recording(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = self.aborted = False

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_write_buffer_size(self) -> int:
        return 0


async def test_pieces_written_in_one_turn_leave_in_one_write() -> None:
    raw = _Recording()
    transport = CoalescingTransport(raw, asyncio.get_running_loop())
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    transport.writelines([b"a", b"", b"b"])
    assert raw.writes == [] and transport.get_write_buffer_size() == 21
    await asyncio.sleep(0)
    assert raw.writes == [b"HTTP/1.1 200 OK\r\n\r\nab"]
    transport.write(b"next")
    await asyncio.sleep(0)
    assert raw.writes[-1] == b"next"


async def test_closing_flushes_and_aborting_drops() -> None:
    raw = _Recording()
    transport = CoalescingTransport(raw, asyncio.get_running_loop())
    transport.write(b"last words")
    transport.close()
    assert raw.writes == [b"last words"] and raw.closed
    dropped = _Recording()
    transport = CoalescingTransport(dropped, asyncio.get_running_loop())
    transport.write(b"never sent")
    transport.abort()
    await asyncio.sleep(0)
    assert dropped.writes == [] and dropped.aborted
    assert transport.is_closing()  # everything else is the wrapped transport's
