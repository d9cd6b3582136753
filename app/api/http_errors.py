"""The one place that turns errors into HTTP answers: domain errors by class, the framework's
own errors, and everything unexpected as a logged, generic 500."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from app.api.responses import FastJSONResponse
from app.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    TorchgateError,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
)
from app.tracing import HEADER as REQUEST_ID_HEADER
from app.tracing import current_request_id

logger = logging.getLogger(__name__)

CLIENT_CLOSED_REQUEST = 499  # nginx's "client closed request"

HTTP_STATUS: dict[type[TorchgateError], int] = {
    BadRequest: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    PayloadTooLarge: 413,
    UnsupportedMediaType: 415,
    InvalidInput: 422,
    Overloaded: 503,
    Unavailable: 503,
}
# The statuses an inference request can fail with, on v1 and v2 REST alike (their OpenAPI).
INFERENCE_ERROR_STATUSES = (400, 404, 409, 413, 415, 422, 503)


def http_status(exc: TorchgateError) -> int:
    """The status of the most specific mapped class ``exc`` is an instance of."""
    for cls in type(exc).__mro__:
        status = HTTP_STATUS.get(cls)
        if status is not None:
            return status
    return 400  # a TorchgateError is the client's to fix


def http_headers(exc: TorchgateError) -> dict[str, str] | None:
    """Retry-After where waiting helps; WWW-Authenticate where credentials are missing."""
    if isinstance(exc, Unauthorized):
        return {"WWW-Authenticate": "Bearer"}
    if exc.retry_after_s is not None:
        return {"Retry-After": str(exc.retry_after_s)}
    return None


def error_key(path: str) -> str:
    """``error`` on the Open Inference Protocol (/v2) routes, ``detail`` elsewhere: each
    protocol's clients read their own field."""
    return "error" if path == "/v2" or path.startswith("/v2/") else "detail"


def _error(
    request: Request, message: str, status_code: int, headers: Mapping[str, str] | None = None
) -> Response:
    key = error_key(request.scope.get("path", ""))
    return FastJSONResponse({key: message}, status_code=status_code, headers=headers)


def _format_validation_error(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        location = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        message = error.get("msg", "invalid value")
        parts.append(f"{location}: {message}" if location else message)
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error as JSON (see ``error_key``); unexpected ones as a logged 500."""

    @app.exception_handler(TorchgateError)
    async def _domain_error(request: Request, exc: TorchgateError) -> Response:
        return _error(request, exc.detail, http_status(exc), http_headers(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        return _error(request, _format_validation_error(exc), 422)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        return _error(request, exc.detail, exc.status_code, exc.headers)

    @app.exception_handler(ClientDisconnect)
    async def _client_gone(request: Request, _: ClientDisconnect) -> Response:
        # Nobody is listening any more; 499 keeps the metrics honest instead of counting the
        # client's hang-up as a server error.
        logger.debug("client disconnected during %s %s", request.method, request.url.path)
        return Response(status_code=CLIENT_CLOSED_REQUEST)

    @app.exception_handler(Exception)
    async def _unexpected_error(request: Request, exc: Exception) -> Response:
        # Starlette answers this one outside every middleware, so the request id is added here.
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        headers = {REQUEST_ID_HEADER: current_request_id()}
        return _error(request, "internal server error", 500, headers)
