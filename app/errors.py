"""Domain errors: what went wrong, in a sentence that says what to change.

The core raises these and knows no protocol; each adapter maps the classes to its own codes
(HTTP in app/api/http_errors.py, gRPC in app/api/grpc/status.py), so one failure reads the
same through every protocol.
"""

from __future__ import annotations

from typing import ClassVar


class TorchgateError(Exception):
    """An error a client can act on: its message says what to change."""

    # Seconds after which trying again may succeed (None: it will not by waiting alone).
    retry_after_s: ClassVar[int | None] = None

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BadRequest(TorchgateError):
    """The request is malformed (bad JSON, unknown field, bad base64)."""


class InvalidInput(TorchgateError):
    """Well-formed request whose content cannot be used (corrupt image, NaN, wrong shape)."""


class UnsupportedMediaType(TorchgateError):
    """The body's declared type is not one this endpoint reads."""


class PayloadTooLarge(TorchgateError):
    """The request is larger than a configured limit (bytes, pixels, tensor elements)."""


class NotFound(TorchgateError):
    """No such model, version or job."""


class Conflict(TorchgateError):
    """The target's current state does not allow this now (not loaded, busy, replaced)."""


class ModelNotReady(Conflict):
    """The model is loading, unavailable or failed: its status says which and why."""


class ReloadFailed(Conflict):
    """The weights' source cannot be read now (missing, corrupt, or replaced by another shape)."""


class Overloaded(TorchgateError):
    """Too much work is waiting: the same request, a moment later, will be served."""

    retry_after_s = 1


class Unavailable(TorchgateError):
    """Something this process needs (its device, the control store) does not work now."""


class ForwardTimeout(Unavailable):
    """A forward did not come back in time (a wedged device worker): the job waiting for it
    ends instead of holding its slot."""


class DeviceUnavailable(Unavailable):
    """The device failed in a way this process cannot recover from (a sticky CUDA error):
    its other replicas, or this one once restarted, can serve."""


class Unauthorized(TorchgateError):
    """No credentials were given where they are required."""


class Forbidden(TorchgateError):
    """The credentials given are not valid."""


class WeightsUnavailable(Exception):
    """Weights cannot be had right now (missing file, offline, hash mismatch): the model is
    ``unavailable`` with this message as its reason, and every other model keeps serving."""


class ConfigurationError(Exception):
    """The service cannot start as configured (e.g. CUDA requested on a host without it)."""
