"""The gRPC port served by uvicorn's HTTP/2 (zttp) in the app's event loop: no thread of its own.

Each connection speaks HTTP/2 with prior knowledge (h2c), as gRPC clients do without TLS; each
stream is one call, answered by ``GrpcAsgiApp`` as a task on the loop, like an HTTP request.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.zttp_h2_impl import ZttpH2Protocol
from uvicorn.server import ServerState

from app.api.grpc.asgi import GrpcAsgiApp
from app.write_coalescing import CoalescingTransport

BACKLOG = 2048  # as uvicorn's HTTP port
KEEP_ALIVE_S = 300  # an idle channel is kept this long (grpc clients hold theirs open)
logger = logging.getLogger(__name__)


class _GrpcH2Protocol(ZttpH2Protocol):
    """uvicorn's HTTP/2 protocol without its HTTP access line (the servicer writes a gRPC one),
    writing each loop turn's frames at once (a call's headers, message and trailers)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.access_log = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]


class GrpcH2Server:
    """Listens on ``sock`` until ``stop``; calls in flight get ``grace_s`` to finish."""

    def __init__(self, app: GrpcAsgiApp, sock: socket.socket) -> None:
        self._app = app
        self._sock = sock
        # log_level None and access_log True: this Config leaves the process's loggers alone
        self._config = Config(
            app,
            http="zttp",
            lifespan="off",
            proxy_headers=False,
            server_header=False,
            date_header=False,
            log_config=None,
            log_level=None,
            timeout_keep_alive=KEEP_ALIVE_S,
        )
        self._state = ServerState()
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        return self._sock.getsockname()[1]

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        config, state = self._config, self._state
        config.load()
        self._server = await loop.create_server(
            lambda: _GrpcH2Protocol(config=config, server_state=state, app_state={}, _loop=loop),
            sock=self._sock,
            backlog=BACKLOG,
        )

    async def stop(self, grace_s: float) -> None:
        """Refuse new calls at once (UNAVAILABLE), let those in flight finish for up to
        ``grace_s``, then close every connection."""
        self._app.drain()
        if self._server is not None:
            self._server.close()
        for connection in list(self._state.connections):
            connection.shutdown()  # GOAWAY once idle; new streams are refused meanwhile
        try:
            async with asyncio.timeout(grace_s):
                while self._state.tasks:
                    await asyncio.sleep(0.05)
        except TimeoutError:
            logger.error(
                "gRPC: %d call(s) cancelled at the end of the grace period", len(self._state.tasks)
            )
            for task in list(self._state.tasks):
                task.cancel()
        for connection in list(self._state.connections):
            connection.shutdown()
