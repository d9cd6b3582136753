"""The hot path in front of the middleware stack: raw-image predicts answered before it.

Why: for a small model at thousands of requests per second the server's cost is the Python per
request, and the event loop's time is what the forward worker waits for (both take the GIL).
FastAPI's stack crosses about ten layers per request, four of which wrap ``send``; py-spy put
them at a quarter of the loop's time per predict, and answering the fast path's requests before
them served 1.30x and 1.38x as many requests per second side by side (README, "Throughput").

It takes the requests the fast path (app/api/fast_predict.py) takes, when their
``Content-Length`` is within the upload limit, and does for them what the stack's layers do:
the request id (tracing), the request metrics, and the app's own exception handlers for every
error, so an answer is the same either way (tested side by side). Everything else, and every
request while FastAPI's OpenTelemetry is switched on (so each request keeps its span), goes
through the stack as before.
"""

from __future__ import annotations

import inspect
import time

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from app.api.body_limit import declared_length
from app.api.fast_predict import RawPredictRoute
from app.api.upload_budget import UploadBudget
from app.metrics import Metrics, RequestObserver, model_label
from app.tracing import HEADER, adopt_scope_request_id, request_id_header

_TELEMETRY_CHECK_S = 1.0  # how long the answer to "is OpenTelemetry on?" is reused


class HotPredict:
    """Answers ``POST /v1/models/{name}/predict`` with a raw image body, or declines it."""

    def __init__(
        self, app: FastAPI, metrics: Metrics, max_body_bytes: int, budget: UploadBudget
    ) -> None:
        self._app = app
        self._route = RawPredictRoute()
        self._observer = RequestObserver(metrics)
        self._max_body_bytes = max_body_bytes
        self._budget = budget
        self._telemetry_checked = float("-inf")
        self._telemetry_on = False

    def _telemetry(self) -> bool:
        """Whether FastAPI's native OpenTelemetry would trace requests (an SDK configured)."""
        now = time.monotonic()
        if now - self._telemetry_checked > _TELEMETRY_CHECK_S:
            native = getattr(self._app, "_native_telemetry", None)  # FastAPI >= 0.160
            self._telemetry_on = native is not None and bool(native.enabled())
            self._telemetry_checked = now
        return self._telemetry_on

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Answer the request and return True, or return False having read nothing."""
        if scope["type"] != "http" or self._telemetry():
            return False
        scope["app"] = self._app  # as Starlette sets it; the route reads the registry from it
        chosen = self._route.choose(scope)
        if chosen is None:
            return False
        declared = declared_length(scope)
        if declared is None or not 0 <= declared <= self._max_body_bytes:
            return False  # chunked or too large: the stack's body limit answers
        name, runtime, top_k = chosen
        started = time.perf_counter()
        request_id = adopt_scope_request_id(scope)
        scope["route"] = self._route
        scope["path_params"] = {"name": name}
        status, taken = 500, 0
        try:
            try:
                self._budget.take(declared)
                taken = declared
                response = await self._route.answer(runtime, name, top_k, receive)
                response.raw_headers.append(request_id_header(request_id))
            except Exception as exc:
                response = await self._error_response(scope, receive, exc)
                if HEADER not in response.headers:  # the 500 handler adds it itself
                    response.raw_headers.append(request_id_header(request_id))
            status = response.status_code
            await response(scope, receive, send)
        finally:
            self._budget.give_back(taken)
            seconds = time.perf_counter() - started
            self._observer.observe(model_label(name), self._route.path, "POST", status, seconds)
        return True

    async def _error_response(self, scope: Scope, receive: Receive, exc: Exception) -> Response:
        """The app's own handler's answer for ``exc`` (the most specific registered class)."""
        handlers = self._app.exception_handlers
        for cls in type(exc).__mro__:
            handler = handlers.get(cls)
            if handler is not None:
                answer = handler(Request(scope, receive), exc)
                return await answer if inspect.isawaitable(answer) else answer  # type: ignore[no-any-return]
        raise exc


class ServingAPI(FastAPI):
    """FastAPI, with the hot path answered before the middleware stack (``hot_predict``)."""

    hot_predict: HotPredict | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hot = self.hot_predict
        if hot is not None and await hot(scope, receive, send):
            return
        await super().__call__(scope, receive, send)
