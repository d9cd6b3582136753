"""Refuse oversized request bodies early (by Content-Length, and while streaming), and bodies
the process's upload budget cannot hold now (app/api/upload_budget.py)."""

from __future__ import annotations

import orjson
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.upload_budget import UploadBudget
from app.errors import Overloaded


def declared_length(scope: Scope) -> int | None:
    """The request's ``Content-Length`` (None: absent, as for a chunked body, or not a number)."""
    for key, value in scope["headers"]:
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class BodySizeLimitMiddleware:
    """413 before reading when the declared length is too big, and as soon as the streamed
    bytes pass the limit (chunked uploads declare nothing). When the route starts reading, the
    body's bytes are taken from ``budget`` (all declared ones at once, else chunk by chunk) and
    given back once the request is answered; what does not fit raises a 503 ``HTTPException``
    into the route (FastAPI passes those on from a body it parses: anything else it would answer
    400 "error parsing the body"), answered by the app's error handler."""

    def __init__(self, app: ASGIApp, max_bytes: int, budget: UploadBudget) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.budget = budget

    def _detail(self) -> str:
        return (
            f"the request body is larger than {self.max_bytes:,} bytes "
            "(TORCHGATE_MAX_UPLOAD_BYTES); send fewer or smaller files."
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = declared_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, send)
            return
        received = taken = 0
        budget = self.budget

        def take(size: int) -> None:
            try:
                budget.take(size)
            except Overloaded as exc:
                raise HTTPException(503, exc.detail, exc.headers) from exc

        async def limited_receive() -> Message:
            nonlocal received, taken
            if declared and not taken:
                take(declared)
                taken = declared
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, self._detail())
                if received > taken:  # chunked, or more than declared (the server refuses)
                    take(received - taken)
                    taken = received
            return message

        try:
            await self.app(scope, limited_receive, send)
        finally:
            budget.give_back(taken)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        key = "error" if scope["path"].startswith("/v2") else "detail"  # v2 speaks KServe
        body = orjson.dumps({key: self._detail()})
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
