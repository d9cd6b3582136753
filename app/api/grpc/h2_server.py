"""The gRPC port served on the app's event loop itself: no thread of its own.

Each connection speaks HTTP/2 with prior knowledge (h2c), as gRPC clients do without TLS,
through ``GrpcH2Protocol`` (zttp's compiled codec); each stream is one call, answered by
``GrpcAsgiApp`` as a task on the loop, like an HTTP request.
"""

from __future__ import annotations

import asyncio
import logging
import socket

from app.api.grpc.asgi import GrpcAsgiApp
from app.api.grpc.h2_protocol import GrpcH2Protocol

BACKLOG = 2048  # as uvicorn's HTTP port
logger = logging.getLogger(__name__)


class GrpcH2Server:
    """Listens on ``sock`` until ``stop``; calls in flight get the grace period to finish."""

    def __init__(self, app: GrpcAsgiApp, sock: socket.socket) -> None:
        self._app = app
        self._sock = sock
        self._connections: set[GrpcH2Protocol] = set()
        self._calls: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        app, connections, calls = self._app, self._connections, self._calls
        self._server = await loop.create_server(
            lambda: GrpcH2Protocol(app, app.most_body_bytes, connections, calls, loop),
            sock=self._sock,
            backlog=BACKLOG,
        )

    async def stop(self, grace_s: float) -> None:
        """Refuse new calls at once (UNAVAILABLE), let those in flight finish for up to
        ``grace_s``, then close every connection (GOAWAY)."""
        self._app.drain()
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            connection.shutdown()  # GOAWAY and close once its calls are answered and sent
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        try:
            async with asyncio.timeout_at(deadline):
                while self._calls:
                    await asyncio.wait(set(self._calls))
                while self._connections:  # the last answers leaving
                    await asyncio.sleep(0.02)
        except TimeoutError:
            if self._calls:
                logger.error("gRPC: %d call(s) cancelled after the grace period", len(self._calls))
            for task in list(self._calls):
                task.cancel()
            await asyncio.gather(*self._calls, return_exceptions=True)
        for connection in list(self._connections):
            connection.close_now()
