"""The hot path: ``POST /v1/models/{name}/predict`` with one image as the raw body.

Why it exists: for a small model at thousands of requests per second, the server's cost is the
Python per request, not the forward pass, and FastAPI's dependency solving, parameter parsing
and its path operation wrapper were a third of it (measured with py-spy). This route is an entry
of the v1 adapter that skips them: it stands first in the app's router, so the router matches
it (the metrics and access log see the route's template, as for any route) and the app's error
handlers answer its errors, exactly as they answer the predict route's.

It matches the common case only: a raw-image body (``parsing.is_raw_image``), at most a
``top_k`` query parameter, a ready classifier (the v1 adapter's own check). Anything else
matches the predict route behind it, unread, which answers as it always did, errors included.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

from app.api.parsing import is_raw_image, media_type, resolve_top_k
from app.api.v1_adapter import PREDICT_PATH, classifier, predict_response
from app.errors import TorchgateError
from app.serving.runtime import ModelRuntime

_PREFIX, _SUFFIX = PREDICT_PATH.split("{name}")
_CHOSEN = "torchgate.raw_predict"  # matches() -> handle(): the runtime and top_k it resolved


def _raw_image_body(scope: Scope) -> bool:
    for key, value in scope["headers"]:
        if key == b"content-type":
            return is_raw_image(media_type(value.decode("latin-1")))
    return False


def _query_top_k(query: bytes) -> tuple[bool, str | None]:
    """(usable, top_k): only an empty query or a single ``top_k`` stays on the fast path."""
    if not query:
        return True, None
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    if len(pairs) != 1 or pairs[0][0] != "top_k" or not pairs[0][1].isdigit():
        return False, None
    return True, pairs[0][1]


async def _read_body(receive: Receive) -> bytes:
    """The whole body, as starlette's ``Request.body`` reads it, without building a Request."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class RawPredictRoute(BaseRoute):
    """The predict route's template, for raw-image bodies; put first in the app's routes."""

    path = path_format = PREDICT_PATH
    name = "predict_raw_body"

    def choose(self, scope: Scope) -> tuple[str, ModelRuntime, int] | None:
        """The model name, its runtime and top_k when this route can answer the request."""
        if scope["type"] != "http" or scope["method"] != "POST" or scope.get("root_path"):
            return None
        path: str = scope["path"]
        if not (path.startswith(_PREFIX) and path.endswith(_SUFFIX)):
            return None
        name = path[len(_PREFIX) : -len(_SUFFIX)]
        if not name or "/" in name or not _raw_image_body(scope):
            return None
        usable, top_k = _query_top_k(scope.get("query_string", b""))
        registry = getattr(scope["app"].state, "registry", None)  # None before the lifespan
        if not usable or registry is None:
            return None
        try:
            runtime = classifier(registry, name)
            return name, runtime, resolve_top_k(top_k, num_classes=len(runtime.labels))
        except TorchgateError:
            return None  # the predict route gives the same error with its usual body

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        chosen = self.choose(scope)
        if chosen is None:
            return Match.NONE, {}
        name, runtime, top_k = chosen
        return Match.FULL, {"route": self, "path_params": {"name": name}, _CHOSEN: (runtime, top_k)}

    def url_path_for(self, name: str, /, **path_params: object) -> object:
        raise NoMatchFound(name, path_params)  # reversed through the predict route instead

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        runtime, top_k = scope[_CHOSEN]
        response = await self.answer(runtime, scope["path_params"]["name"], top_k, receive)
        await response(scope, receive, send)

    @staticmethod
    async def answer(runtime: ModelRuntime, name: str, top_k: int, receive: Receive) -> Response:
        """Read the body, decode it and classify it: the answer, or the exception to answer."""
        body = await _read_body(receive)
        samples = await runtime.decode_images([body])
        return await predict_response(runtime, name, samples, top_k)
