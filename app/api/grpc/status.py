"""gRPC status codes for the domain's exceptions (app/errors.py), chosen by exception class.

By class, not by the HTTP status an exception carries: two errors that share an HTTP status can
mean different things to a gRPC client (``Overloaded``, retry here later, is RESOURCE_EXHAUSTED;
``DeviceUnavailable``, try another replica, is UNAVAILABLE), and the HTTP statuses may move.
The exception's class hierarchy is walked, so a subclass answers as its parent does.
"""

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
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
)

INTERNAL_DETAILS = "internal server error"

CODES: dict[type[BaseException], StatusCode] = {
    BadRequest: StatusCode.INVALID_ARGUMENT,
    InvalidInput: StatusCode.INVALID_ARGUMENT,
    UnsupportedMediaType: StatusCode.INVALID_ARGUMENT,
    NotFound: StatusCode.NOT_FOUND,
    Conflict: StatusCode.FAILED_PRECONDITION,  # not ready, replaced, busy
    PayloadTooLarge: StatusCode.RESOURCE_EXHAUSTED,
    Overloaded: StatusCode.RESOURCE_EXHAUSTED,
    Unavailable: StatusCode.UNAVAILABLE,  # the device, the control store: try another replica
    Unauthorized: StatusCode.UNAUTHENTICATED,
    Forbidden: StatusCode.PERMISSION_DENIED,
}


def status_code(exc: BaseException) -> StatusCode | None:
    """The code a client gets for ``exc``, or None for an error it did not cause (INTERNAL)."""
    for cls in type(exc).__mro__:
        code = CODES.get(cls)
        if code is not None:
            return code
    return None
