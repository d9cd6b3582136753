"""The hot path: ``POST /v1/models/{name}/predict`` with one image as the raw body.

Why it exists: for a small model at thousands of requests per second, the server's cost is the
Python per request, not the forward pass, and FastAPI's router, exception middlewares and
dependency solving were a third of it (measured with py-spy). This ASGI middleware answers the
common case — a raw ``image/*`` or ``application/octet-stream`` body, at most a ``top_k`` query
parameter, a ready classifier — with the same decode, batching, response body and headers as
the route, and sets the route on the scope so metrics label it the same.

Anything else (another content type or query parameter, an unknown or loading model, a bad
``top_k``, a root path) is handed, untouched and unread, to the full app, which answers it
exactly as before, errors included. Once the fast path has started reading the body it answers
every domain error itself, with the same status and JSON body as the app's handlers.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.inference import predict_response
from app.api.parsing import resolve_top_k
from app.errors import CLIENT_CLOSED_REQUEST, TorchgateError, error_response
from app.serving.runtime import ModelRuntime

ROUTE_PATH = "/v1/models/{name}/predict"
_PREFIX, _SUFFIX = "/v1/models/", "/predict"


@dataclass(frozen=True)
class RouteTemplate:
    """What the metrics middleware reads from ``scope["route"]``: the route's path template."""

    path: str = ROUTE_PATH


def _raw_image_body(scope: Scope) -> bool:
    for key, value in scope["headers"]:
        if key == b"content-type":
            media_type = value.split(b";", 1)[0].strip().lower()
            return media_type.startswith(b"image/") or media_type == b"application/octet-stream"
    return False


def _query_top_k(query: bytes) -> tuple[bool, str | None]:
    """(usable, top_k): only an empty query or a single ``top_k`` stays on the fast path."""
    if not query:
        return True, None
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    if len(pairs) != 1 or pairs[0][0] != "top_k" or not pairs[0][1].isdigit():
        return False, None
    return True, pairs[0][1]


class PredictFastPath:
    """Innermost middleware of the public app: inside request ids, metrics and the body limit."""

    def __init__(self, app: ASGIApp, root: FastAPI) -> None:
        self.app = app
        self._root = root
        self._route = RouteTemplate()

    def _runtime(self, scope: Scope) -> tuple[ModelRuntime, str, int] | None:
        """The runtime, model name and top_k when the request can take the fast path."""
        if scope["type"] != "http" or scope["method"] != "POST" or scope.get("root_path"):
            return None
        path: str = scope["path"]
        if not (path.startswith(_PREFIX) and path.endswith(_SUFFIX)):
            return None
        name = path[len(_PREFIX) : -len(_SUFFIX)]
        if not name or "/" in name or not _raw_image_body(scope):
            return None
        usable, top_k = _query_top_k(scope.get("query_string", b""))
        registry = getattr(self._root.state, "registry", None)
        if not usable or registry is None:
            return None
        try:
            runtime = registry.runtime(name)
            if not runtime.spec.is_classifier:
                return None
            return runtime, name, resolve_top_k(top_k, num_classes=len(runtime.labels))
        except TorchgateError:
            return None  # the app's route gives the same error with its usual body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        chosen = self._runtime(scope)
        if chosen is None:
            await self.app(scope, receive, send)
            return
        runtime, name, top_k = chosen
        scope["route"] = self._route
        scope["path_params"] = {"name": name}
        response: Response
        try:
            body = await Request(scope, receive).body()
            samples = await runtime.decode_images([body])
            response = await predict_response(runtime, name, samples, top_k)
        except (TorchgateError, HTTPException) as exc:  # HTTPException: the body limit
            response = error_response(scope["path"], exc.detail, exc.status_code, exc.headers)
        except ClientDisconnect:
            response = Response(status_code=CLIENT_CLOSED_REQUEST)
        await response(scope, receive, send)
