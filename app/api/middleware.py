"""Everything the service does around every HTTP request, in one pure ASGI layer.

One layer, not one per concern: each layer wraps ``send`` (and here ``receive``) once more, and
for a small model at thousands of requests per second the Python per request is the server's
cost. It gives each request its ``X-Request-ID`` (the client's, if valid, or a fresh one),
counts and times it by route template, refuses bodies over the upload limit (by
``Content-Length`` before reading, and while streaming), and takes the body's bytes from the
process's upload budget as they arrive (app/api/upload_budget.py), giving them back once the
request is answered.
"""

from __future__ import annotations

import time

import orjson
from prometheus_client import Counter, Histogram
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.http_errors import error_key
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


class ServingMiddleware:
    """Request id, metrics, body limit and upload budget for every HTTP request."""

    def __init__(
        self, app: ASGIApp, metrics: Metrics, max_body_bytes: int, budget: UploadBudget
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.budget = budget
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
        status = 500
        received = 0
        budget, limit = self.budget, self.max_body_bytes

        async def receive_counted() -> Message:
            nonlocal received
            message = await receive()
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
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        try:
            if declared is not None and declared > limit:
                await self._refuse(scope, send_with_id)
            else:
                await self.app(scope, receive_counted, send_with_id)
        finally:
            budget.give_back(received)
            self._observer.observe(scope, status, time.perf_counter() - started)

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
