"""The gRPC status of each domain error (app/errors.py), by class: gRPC's half of the one
mapping whose HTTP half is app/api/http_errors.py."""

from __future__ import annotations

from grpc import StatusCode

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

GRPC_STATUS: dict[type[TorchgateError], StatusCode] = {
    BadRequest: StatusCode.INVALID_ARGUMENT,
    InvalidInput: StatusCode.INVALID_ARGUMENT,
    UnsupportedMediaType: StatusCode.INVALID_ARGUMENT,
    NotFound: StatusCode.NOT_FOUND,
    Conflict: StatusCode.FAILED_PRECONDITION,
    PayloadTooLarge: StatusCode.RESOURCE_EXHAUSTED,
    # retry later, or with less; UNAVAILABLE (below) tells a client to try another replica
    Overloaded: StatusCode.RESOURCE_EXHAUSTED,
    Unavailable: StatusCode.UNAVAILABLE,
    Unauthorized: StatusCode.UNAUTHENTICATED,
    Forbidden: StatusCode.PERMISSION_DENIED,
}


def grpc_status(exc: TorchgateError) -> StatusCode:
    """The code of the most specific mapped class ``exc`` is an instance of."""
    for cls in type(exc).__mro__:
        code = GRPC_STATUS.get(cls)
        if code is not None:
            return code
    return StatusCode.INVALID_ARGUMENT  # a TorchgateError is the client's to fix
