"""Domain exceptions, and the one place that maps them (and framework errors) to HTTP and gRPC."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from grpc import StatusCode
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from app.responses import FastJSONResponse
from app.tracing import HEADER as REQUEST_ID_HEADER
from app.tracing import current_request_id

logger = logging.getLogger(__name__)

CLIENT_CLOSED_REQUEST = 499


class TorchgateError(Exception):
    """An error a client can act on: its message says what to change."""

    status_code = 400
    headers: ClassVar[dict[str, str] | None] = None

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BadRequest(TorchgateError):
    status_code = 400


class InvalidInput(TorchgateError):
    """Well-formed request whose content cannot be used (corrupt image, NaN, wrong shape)."""

    status_code = 422


class UnsupportedMediaType(TorchgateError):
    status_code = 415


class PayloadTooLarge(TorchgateError):
    status_code = 413


class NotFound(TorchgateError):
    status_code = 404


class ModelNotReady(TorchgateError):
    status_code = 409


class ReloadFailed(TorchgateError):
    """The weights' source cannot be read now (missing, corrupt, or replaced by another shape)."""

    status_code = 409


class Overloaded(TorchgateError):
    status_code = 503
    headers: ClassVar[dict[str, str] | None] = {"Retry-After": "1"}


class DeviceUnavailable(TorchgateError):
    """The device failed in a way this process cannot recover from (a sticky CUDA error):
    its other replicas, or this one once restarted, can serve."""

    status_code = 503


class Unauthorized(TorchgateError):
    status_code = 401
    headers: ClassVar[dict[str, str] | None] = {"WWW-Authenticate": "Bearer"}


class Forbidden(TorchgateError):
    status_code = 403


class WeightsUnavailable(Exception):
    """Weights cannot be had right now (missing file, offline, hash mismatch): the model is
    ``unavailable`` with this message as its reason, and every other model keeps serving."""


class ConfigurationError(Exception):
    """The service cannot start as configured (e.g. CUDA requested on a host without it)."""


def _format_validation_error(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        location = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        message = error.get("msg", "invalid value")
        parts.append(f"{location}: {message}" if location else message)
    return "; ".join(parts) or "invalid request"


# The statuses an inference request can fail with, on v1 and v2 REST alike (their OpenAPI).
INFERENCE_ERROR_STATUSES = (400, 404, 409, 413, 415, 422, 503)

# The same errors on gRPC (api/grpc), by the HTTP status each one carries.
GRPC_STATUS: dict[int, StatusCode] = {
    400: StatusCode.INVALID_ARGUMENT,
    401: StatusCode.UNAUTHENTICATED,
    403: StatusCode.PERMISSION_DENIED,
    404: StatusCode.NOT_FOUND,
    409: StatusCode.FAILED_PRECONDITION,
    413: StatusCode.RESOURCE_EXHAUSTED,
    415: StatusCode.INVALID_ARGUMENT,
    422: StatusCode.INVALID_ARGUMENT,
    503: StatusCode.UNAVAILABLE,
}


def grpc_status(exc: TorchgateError) -> StatusCode:
    """``Overloaded`` is RESOURCE_EXHAUSTED (retry later, or with less); every other 503 (the
    store, the device) is UNAVAILABLE, which tells a client to try another replica."""
    if isinstance(exc, Overloaded):
        return StatusCode.RESOURCE_EXHAUSTED
    return GRPC_STATUS.get(exc.status_code, StatusCode.UNKNOWN)


def _error(
    request: Request, message: str, status_code: int, headers: Mapping[str, str] | None = None
) -> Response:
    """``{"error": ...}`` on the Open Inference Protocol (/v2) routes, ``{"detail": ...}`` on the
    others: each protocol's clients read their own field."""
    path = request.scope.get("path", "")
    key = "error" if path == "/v2" or path.startswith("/v2/") else "detail"
    return FastJSONResponse({key: message}, status_code=status_code, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error as JSON (see ``_error``); unexpected ones as a logged generic 500."""

    @app.exception_handler(TorchgateError)
    async def _domain_error(request: Request, exc: TorchgateError) -> Response:
        return _error(request, exc.detail, exc.status_code, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        return _error(request, _format_validation_error(exc), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return _error(request, exc.detail, exc.status_code, exc.headers)

    @app.exception_handler(ClientDisconnect)
    async def _client_gone(request: Request, _: ClientDisconnect) -> Response:
        # Nobody is listening any more; 499 (nginx's "client closed request") keeps the
        # metrics honest instead of counting the client's hang-up as a server error.
        logger.debug("client disconnected during %s %s", request.method, request.url.path)
        return Response(status_code=CLIENT_CLOSED_REQUEST)

    @app.exception_handler(Exception)
    async def _unexpected_error(request: Request, exc: Exception) -> Response:
        # Starlette answers this one outside every middleware, so the request id is added here.
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        headers = {REQUEST_ID_HEADER: current_request_id()}
        return _error(request, "internal server error", 500, headers)
