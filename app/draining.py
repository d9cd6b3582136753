"""The moment a process stops taking new work: when its HTTP server is told to stop.

On SIGTERM (or SIGINT) uvicorn closes its listening sockets within a tenth of a second, drains
the requests in flight for up to its graceful timeout, and only then runs the lifespan's
shutdown. The gRPC server and the readiness answers must stop taking work at the signal too,
not once HTTP has drained, or a draining pod would keep accepting gRPC calls for up to 30 s.
So, while the app runs, a handler is chained in front of the one the HTTP server installed for
those signals: it starts the drain, then hands the signal on. With ``--workers N`` uvicorn's
supervisor passes SIGTERM to every worker, and each one's handler starts its own drain.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from types import FrameType

SIGNALS = (signal.SIGTERM, signal.SIGINT)  # the ones uvicorn stops on
logger = logging.getLogger(__name__)

Step = Callable[[], Awaitable[None]]


class Drain:
    """Starts once, at the first stop signal or at the latest at the lifespan's shutdown; each
    registered step (stop the gRPC server, ...) then runs as a task, and ``finish`` waits for
    them."""

    def __init__(self) -> None:
        self.started = False
        self._steps: list[Step] = []
        self._tasks: list[asyncio.Future[None]] = []

    def on_start(self, step: Step) -> None:
        """Run ``step`` when the drain starts."""
        self._steps.append(step)

    def start(self) -> None:
        """From now on, take no new work (on the event loop; once)."""
        if self.started:
            return
        self.started = True
        logger.info("Draining: new calls are refused, those in flight may finish")
        self._tasks = [asyncio.ensure_future(step()) for step in self._steps]

    async def finish(self) -> None:
        """Start, if no signal did, and wait for every step (a failed one is logged)."""
        self.start()
        for outcome in await asyncio.gather(*self._tasks, return_exceptions=True):
            if isinstance(outcome, Exception):
                logger.error("A drain step failed", exc_info=outcome)

    @contextmanager
    def on_server_signals(self) -> Iterator[None]:
        """While inside, SIGTERM and SIGINT start the drain before the server's handler runs.

        Only a Python handler is chained: one that a server (uvicorn) installed to stop
        gracefully. Where there is none (the default action, a server that handles signals in
        native code, a lifespan off the main thread), the drain starts with the shutdown.
        """
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        loop = asyncio.get_running_loop()
        chained: dict[signal.Signals, Callable[[int, FrameType | None], None]] = {}
        previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
        for sig, handler in previous.items():
            if not callable(handler):
                continue

            def start_then(
                signum: int, frame: FrameType | None, handler: Callable = handler
            ) -> None:
                loop.call_soon_threadsafe(self.start)  # the safe way out of a signal handler
                handler(signum, frame)

            chained[sig] = start_then
            signal.signal(sig, start_then)
        try:
            yield
        finally:
            for sig, handler in chained.items():
                if signal.getsignal(sig) is handler:  # unless someone replaced it since
                    signal.signal(sig, previous[sig])
