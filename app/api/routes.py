"""How path operations reach the app: one flat list of routes, and a lean route class for the
endpoints clients call thousands of times a second.

- ``add_routes``: ``app.include_router`` in FastAPI 0.16x keeps each router as a nested matcher
  that every request walks twice (once to match, once to handle), with scope bookkeeping at each
  level. Our routers carry their prefixes, tags and dependencies on each of their routes and are
  included with no options of their own, so their routes become the app's routes as they are,
  and Starlette matches a request against one list, once (/healthz in process: ~1.3x less
  time per request than through the nested routers, side by side).
- ``RequestRoute``: FastAPI's own handler resolves dependencies, reads declared parameters and
  serializes a returned value on every request, and costs that much even when an endpoint has
  none of them. An endpoint that takes the ``Request`` alone and returns a ``Response`` needs
  none of it; this route class (FastAPI's documented extension point, a custom ``APIRoute``'s
  ``get_route_handler``) calls it directly. Everything else about it is an ordinary path
  operation: matching, OpenAPI (``response_model``, ``responses``, ``openapi_extra``), and the
  app's middleware and exception handlers around it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.routing import APIRoute


def add_routes(app: FastAPI, routers: Iterable[APIRouter]) -> None:
    """Append every route of ``routers`` (in order) to ``app``'s own route list."""
    for router in routers:
        app.router.routes.extend(router.routes)


class RequestRoute(APIRoute):
    """A path operation whose endpoint is ``async def endpoint(request: Request) -> Response``,
    called without FastAPI's dependency and parameter machinery (refused at startup otherwise)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        # one parameter, the Request (a Response, BackgroundTasks or declared parameter beside
        # it would never be passed), and no dependencies (its router's included)
        alone = len(inspect.signature(endpoint).parameters) == 1
        if not alone or self.dependant.request_param_name is None or self.dependant.dependencies:
            raise TypeError(
                f"{endpoint.__qualname__} ({path}): a RequestRoute's endpoint takes the Request "
                "alone and has no dependencies; use an ordinary APIRoute for anything else."
            )

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        return self.endpoint  # type: ignore[return-value]  # checked in __init__
