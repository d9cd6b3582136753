"""Everything the service does around every HTTP request, in one pure ASGI layer.

One layer, not one per concern: each layer wraps ``send`` (and here ``receive``) once more, and
for a small model at thousands of requests per second the Python per request is the server's
cost. It gives each request its ``X-Request-ID`` (the client's, if valid, or a fresh one),
counts and times it by route template, and guards its body:

- over the upload limit: 413, by ``Content-Length`` before reading, or while streaming;
- the bytes are taken from the process's upload budget as they arrive
  (app/api/upload_budget.py) and given back once the request is answered;
- no gap between body chunks longer than ``chunk_timeout_s``, and the whole body within
  ``body_deadline_s``: else 408 and the connection is closed, so a client that stalls cannot
  hold a connection, a task and its bytes.

It tells the connection's guard (app/api/connections.py) when a request starts and when its
answer has gone. If the client disconnects while its request waits (for a decode slot, a batch,
the forward), the guard cancels the request's task: work not started yet is dropped, and the
request ends as 499 (nginx's "client closed request").
"""

from __future__ import annotations

import asyncio
import time

import orjson
from prometheus_client import Counter, Histogram
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.connections import GuardedHttpProtocol
from app.api.deadlines import Deadlines
from app.api.http_errors import CLIENT_CLOSED_REQUEST, error_key
from app.api.upload_budget import UploadBudget
from app.errors import Overloaded
from app.metrics import Metrics, model_label
from app.tracing import HEADER, adopt_request_id

_ID_KEY = HEADER.lower().encode()
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestObserver:
    """Counts and times HTTP requests under bounded labels (route templates, known models)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        # labels() hashes and locks on every call; the label sets are few and bounded, so
        # their children are looked up once.
        self._children: dict[tuple[str, str, str, int], tuple[Counter, Histogram]] = {}

    def observe(self, scope: Scope, status: int, seconds: float) -> None:
        model = model_label(scope.get("path_params", {}).get("name"))
        template = getattr(scope.get("route"), "path", "unmatched")
        method = scope["method"] if scope["method"] in _METHODS else "OTHER"
        key = (model, template, method, status)
        children = self._children.get(key)
        if children is None:
            metrics = self._metrics
            children = (
                metrics.requests.labels(model, template, method, str(status)),
                metrics.latency.labels(model, template),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)


def _read_headers(scope: Scope) -> tuple[str | None, int | None]:
    """The client's request id and the declared ``Content-Length`` (None: absent or bad)."""
    incoming = declared = None
    for key, value in scope["headers"]:
        if key == b"content-length":
            declared = int(value) if value.isdigit() else None
        elif key == _ID_KEY:
            incoming = value.decode("latin-1")
    return incoming, declared


class _Stall:
    """A request's body deadline, watched in the loop's ``Deadlines``: past it, the request's
    task is cancelled, and the cancellation is turned into a 408 where the body was awaited
    (as ``asyncio.timeout`` does it, on one shared timer instead of one per chunk)."""

    __slots__ = ("cut_off", "task")

    def __init__(self) -> None:
        self.task: asyncio.Task[object] | None = None
        self.cut_off = False

    def cut(self) -> None:
        if self.task is not None and not self.task.done():
            self.cut_off = True
            self.task.cancel()

    def ended_by_us(self) -> bool:
        """Whether the cancellation being raised is ours alone (another one passes on)."""
        if not self.cut_off or self.task is None:
            return False
        self.cut_off = False
        return self.task.uncancel() == 0


def _guard(scope: Scope) -> GuardedHttpProtocol | None:
    client = scope.get("client")
    return GuardedHttpProtocol.by_client.get(client) if isinstance(client, tuple) else None


class ServingMiddleware:
    """Request id, metrics, body limit, upload budget and body deadlines for every request."""

    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        max_body_bytes: int,
        budget: UploadBudget,
        chunk_timeout_s: float = 10.0,
        body_deadline_s: float = 210.0,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.budget = budget
        self.chunk_timeout_s = chunk_timeout_s
        self.body_deadline_s = body_deadline_s
        self._observer = RequestObserver(metrics)

    def _too_large(self) -> str:
        return (
            f"the request body is larger than {self.max_body_bytes:,} bytes "
            "(TORCHGATE_MAX_UPLOAD_BYTES); send fewer or smaller files."
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        incoming, declared = _read_headers(scope)
        id_header = (_ID_KEY, adopt_request_id(incoming).encode())
        guard = _guard(scope)
        if guard is not None:
            guard.request_started(asyncio.current_task())
        status = 500
        received = 0
        body_done = False
        budget, limit = self.budget, self.max_body_bytes
        loop = asyncio.get_running_loop()
        deadlines = Deadlines.of(loop)
        deadline = loop.time() + self.body_deadline_s
        stall = _Stall()

        async def receive_guarded() -> Message:
            nonlocal received, body_done
            if body_done:  # after the body, a disconnect listener may wait as long as it likes
                return await receive()
            stall.task = asyncio.current_task(loop)  # whichever task awaits the body
            deadlines.watch(stall, min(loop.time() + self.chunk_timeout_s, deadline), stall.cut)
            try:
                message = await receive()
            except asyncio.CancelledError:
                if stall.ended_by_us():
                    raise HTTPException(
                        408, self._too_slow(received), {"Connection": "close"}
                    ) from None
                raise
            finally:
                deadlines.unwatch(stall)
            size = len(message.get("body", b""))
            if size:
                if received + size > limit:
                    raise HTTPException(413, self._too_large())
                try:
                    budget.take(size)
                except Overloaded as exc:  # FastAPI passes HTTPException on from a body it
                    # parses itself; any other error there it would answer 400
                    headers = {"Retry-After": str(exc.retry_after_s)}
                    raise HTTPException(503, exc.detail, headers) from exc
                received += size
            body_done = not message.get("more_body", False)
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)
            last = message["type"] == "http.response.body" and not message.get("more_body")
            if last and guard is not None:
                guard.response_sent()

        try:
            if declared is not None and declared > limit:
                await self._refuse(scope, send_with_id)
            else:
                await self.app(scope, receive_guarded, send_with_id)
        except asyncio.CancelledError:
            if guard is None or not guard.client_gone:
                raise
            asyncio.current_task().uncancel()  # type: ignore[union-attr]  # ours: the client left
            status = CLIENT_CLOSED_REQUEST
        finally:
            budget.give_back(received)
            self._observer.observe(scope, status, time.perf_counter() - started)

    def _too_slow(self, received: int) -> str:
        return (
            f"the request body stalled after {received:,} bytes: it must not pause longer than "
            f"{self.chunk_timeout_s:g} s (TORCHGATE_BODY_CHUNK_TIMEOUT_S) and must arrive "
            f"within {self.body_deadline_s:g} s (TORCHGATE_BODY_TIMEOUT_S)."
        )

    async def _refuse(self, scope: Scope, send: Send) -> None:
        """413 before reading a byte; the connection closes, so the body is never read."""
        body = orjson.dumps({error_key(scope["path"]): self._too_large()})
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
