"""Domain errors carry no protocol: each adapter maps them by class, the most specific first."""

from __future__ import annotations

import pytest
from grpc import StatusCode

from app.api.grpc.status import status_code
from app.api.http_errors import http_headers, http_status
from app.errors import (
    BadRequest,
    DeviceUnavailable,
    Forbidden,
    InvalidInput,
    ModelNotReady,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    ReloadFailed,
    TorchgateError,
    Unauthorized,
    UnsupportedMediaType,
)
from app.serving.evaluations import EvaluationInterrupted
from app.serving.store import JobConflict, StoreUnavailable


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (BadRequest, 400, StatusCode.INVALID_ARGUMENT),
        (UnsupportedMediaType, 415, StatusCode.INVALID_ARGUMENT),
        (InvalidInput, 422, StatusCode.INVALID_ARGUMENT),
        (NotFound, 404, StatusCode.NOT_FOUND),
        (ModelNotReady, 409, StatusCode.FAILED_PRECONDITION),
        (ReloadFailed, 409, StatusCode.FAILED_PRECONDITION),
        (JobConflict, 409, StatusCode.FAILED_PRECONDITION),
        (EvaluationInterrupted, 409, StatusCode.FAILED_PRECONDITION),
        (PayloadTooLarge, 413, StatusCode.RESOURCE_EXHAUSTED),
        (Overloaded, 503, StatusCode.RESOURCE_EXHAUSTED),
        (StoreUnavailable, 503, StatusCode.UNAVAILABLE),
        (DeviceUnavailable, 503, StatusCode.UNAVAILABLE),
        (Unauthorized, 401, StatusCode.UNAUTHENTICATED),
        (Forbidden, 403, StatusCode.PERMISSION_DENIED),
    ],
)
def test_each_error_has_one_http_status_and_one_grpc_code(
    error: type[TorchgateError], status: int, code: StatusCode
) -> None:
    assert http_status(error("message")) == status
    assert status_code(error("message")) is code


def test_waiting_helps_only_where_the_error_says_so() -> None:
    assert http_headers(Overloaded("busy")) == {"Retry-After": "1"}
    assert http_headers(StoreUnavailable("down")) == {"Retry-After": "2"}
    assert http_headers(DeviceUnavailable("lost")) is None
    assert http_headers(Unauthorized("who")) == {"WWW-Authenticate": "Bearer"}
    assert http_headers(InvalidInput("nan")) is None
