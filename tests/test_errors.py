"""Domain errors map to one HTTP status and, through the same table, one gRPC code."""

from __future__ import annotations

import pytest
from grpc import StatusCode

from app.errors import (
    BadRequest,
    InvalidInput,
    ModelNotReady,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    TorchgateError,
    UnsupportedMediaType,
    grpc_status,
)
from app.serving.store import StoreUnavailable


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (BadRequest, StatusCode.INVALID_ARGUMENT),
        (UnsupportedMediaType, StatusCode.INVALID_ARGUMENT),
        (InvalidInput, StatusCode.INVALID_ARGUMENT),
        (NotFound, StatusCode.NOT_FOUND),
        (ModelNotReady, StatusCode.FAILED_PRECONDITION),
        (PayloadTooLarge, StatusCode.RESOURCE_EXHAUSTED),
        (Overloaded, StatusCode.RESOURCE_EXHAUSTED),
        (StoreUnavailable, StatusCode.UNAVAILABLE),
    ],
)
def test_grpc_codes_follow_the_http_status(error: type[TorchgateError], code: StatusCode) -> None:
    assert grpc_status(error("message")) is code
