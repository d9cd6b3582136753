"""What uvicorn's HTTP/1.1 server lacks for a service facing the open network: a deadline and a
size bound for each request's headers, whatever parser is in use.

uvicorn closes idle keep-alive connections, but a connection that sends its headers a line
every few seconds (slowloris), or a header block of megabytes, is kept and read for as long as
the client likes: httptools has no header limit, and nothing times a request's head. Rather
than parse HTTP ourselves, ``GuardedHttpProtocol`` wraps uvicorn's own protocol object (by
composition, through the public ``asyncio.Protocol`` interface) and only counts bytes and time:

- from a connection's start, and from the first byte after an answer, its next request's head
  must arrive whole within ``header_timeout_s`` (watched on the loop's one deadline timer,
  app/api/deadlines.py, so it fires up to 0.1 s late);
- the bytes received until the blank line that ends a head (found by a byte search, nothing
  is interpreted) may not exceed ``max_header_bytes``; body bytes after it are the
  middleware's to bound and time.

Past either, the connection is closed (RFC 9110 allows closing instead of a 431). The app tells
the guard when a request starts and when its answer has been sent (app/api/middleware.py, via
``request_started``/``response_sent``, keyed by the client's address). When the connection is
lost with a request unanswered, the guard cancels that request's task, so the work it waits for
(a decode slot, a batch) is dropped instead of done for nobody; the middleware ends it as 499.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

from uvicorn.config import HTTP_PROTOCOLS
from uvicorn.importer import import_from_string

from app.api.coalescing import CoalescingTransport
from app.api.deadlines import Deadlines

logger = logging.getLogger(__name__)

Address = tuple[str, int]


def _head_end(data: bytes) -> int:
    """Where the blank line ending a request head ends in ``data`` (-1: not there yet); heads
    end with CRLF CRLF, or LF LF from lenient clients."""
    ends = [at + 3 for at in (data.find(b"\n\r\n"),) if at >= 0]
    ends += [at + 2 for at in (data.find(b"\n\n"),) if at >= 0]
    return min(ends, default=-1)


class GuardedHttpProtocol(asyncio.Protocol):
    """uvicorn's httptools protocol, with a deadline and a byte bound on each request head."""

    inner_class: ClassVar[type[asyncio.Protocol]] = import_from_string(HTTP_PROTOCOLS["httptools"])
    header_timeout_s: ClassVar[float] = 10.0
    max_header_bytes: ClassVar[int] = 64 * 1024
    # The guards of this process's open connections, by client address: the app finds the
    # guard of a request's connection here (scope["client"]).
    by_client: ClassVar[dict[Address, GuardedHttpProtocol]] = {}

    def __init__(self, **kwargs: Any) -> None:
        self._inner = self.inner_class(**kwargs)
        self._loop = kwargs.get("_loop") or asyncio.get_event_loop()
        self._transport: asyncio.Transport | None = None
        self._client: Address | None = None
        self._in_request = False
        self._in_head = True  # counting a head's bytes: until its blank line
        self._tail = b""  # the last bytes seen, for a blank line split across reads
        self._request: asyncio.Task[object] | None = None
        self.client_gone = False
        self._head_bytes = 0
        self._deadlines = Deadlines.of(self._loop)  # one timer for all connections' heads
        self._timed = False  # a head deadline is watched

    @classmethod
    def configure(cls, header_timeout_s: float, max_header_bytes: int) -> None:
        """Set this process's limits (``serve`` does, from the settings, in every worker)."""
        cls.header_timeout_s = header_timeout_s
        cls.max_header_bytes = max_header_bytes

    # asyncio.Protocol, delegated
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self._client = (str(peer[0]), int(peer[1]))
            self.by_client[self._client] = self
        # one socket write per loop turn for the protocol's answers (app/api/coalescing.py)
        self._inner.connection_made(CoalescingTransport(transport, self._loop))  # type: ignore[arg-type]
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            if not self._timed:
                self._arm()  # the first byte of the next request, after an answer
            seen = self._tail + data
            end = _head_end(seen)
            counted = len(data) if end < 0 else max(0, end - len(self._tail))
            self._head_bytes += counted
            if self._head_bytes > self.max_header_bytes:
                self._close(f"its request head passed {self.max_header_bytes} bytes")
                return
            if end >= 0:
                self._head_complete()
            else:
                self._tail = seen[-3:]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._client is not None and self.by_client.get(self._client) is self:
            del self.by_client[self._client]
        self._inner.connection_lost(exc)
        if self._in_request and self._request is not None and not self._request.done():
            self.client_gone = True
            self._request.cancel()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    # what the app reports
    def request_started(self, task: asyncio.Task[object] | None) -> None:
        """The app was called, in ``task``: the head is complete, and the body has deadlines
        of its own (the middleware's)."""
        self._in_request = True
        self._request = task
        self._head_complete()

    def response_sent(self) -> None:
        """The answer has gone; the next request's head is timed from its first byte."""
        self._in_request = False
        self._request = None
        self._in_head = True
        self._tail = b""
        self._head_bytes = 0

    def _head_complete(self) -> None:
        self._in_head = False
        self._disarm()

    def _arm(self) -> None:
        self._deadlines.watch(self, self._loop.time() + self.header_timeout_s, self._timed_out)
        self._timed = True

    def _disarm(self) -> None:
        if self._timed:
            self._deadlines.unwatch(self)
            self._timed = False

    def _timed_out(self) -> None:
        self._timed = False
        if self._in_head:
            self._close(f"its request head did not arrive within {self.header_timeout_s:g} s")

    def _close(self, why: str) -> None:
        logger.info("closing the connection from %s: %s", self._client, why)
        self._disarm()
        if self._transport is not None:
            self._transport.close()
