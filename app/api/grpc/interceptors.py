"""What every call gets around the servicer, as grpc.aio interceptors (KServe's shape).

``CallObserver`` (inference methods): adopts the client's ``x-request-id`` (or makes one) so
log lines carry it and echoes it in the trailing metadata; counts and times the call by model,
method and status code, cancelled and deadline-exceeded calls included; one access-log line,
with the reason when the call was refused (no traceback: the client's mistake is not ours).
``ErrorMapper`` (every method): a domain exception becomes its status code (``status.py``) with
its sentence; anything else is INTERNAL "internal server error", its traceback logged once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import grpc
from prometheus_client import Counter, Histogram

from app.api.grpc.handlers import Behavior, MethodInterceptor, wrap
from app.api.grpc.messages import call_message
from app.api.grpc.servicer import SERVICE
from app.api.grpc.status import INTERNAL_DETAILS, status_code
from app.metrics import Metrics
from app.tracing import GRPC_ACCESS_LOGGER, GRPC_METADATA_KEY, adopt_request_id
from app.zoo import SPECS

logger = logging.getLogger(__name__)
access_logger = logging.getLogger(GRPC_ACCESS_LOGGER)


def _incoming_id(context: grpc.aio.ServicerContext) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == GRPC_METADATA_KEY and isinstance(value, str):
            return value
    return None


def _ended_early(context: grpc.aio.ServicerContext) -> grpc.StatusCode:
    """The status grpcio gave a call whose method it cancelled."""
    remaining = context.time_remaining()
    past_deadline = remaining is not None and remaining <= 0
    return grpc.StatusCode.DEADLINE_EXCEEDED if past_deadline else grpc.StatusCode.CANCELLED


def _model_of(message: Any) -> str:
    """The model a request names ("" for the server's own methods), bounded to known names."""
    model = getattr(message, "model_name", None) or getattr(message, "name", None) or ""
    return model if not model or model in SPECS else "unknown"


class CallObserver(MethodInterceptor):
    """Request id, metrics and access log for the inference service's calls."""

    def __init__(self, metrics: Metrics, access_log: bool) -> None:
        super().__init__()
        self._metrics = metrics
        self._access_log = access_log
        # label children looked up once per (model, method, code), as the HTTP middleware does
        self._children: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}

    def wrap_handler(self, path: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        if not path.startswith(f"/{SERVICE}/"):
            return handler
        method = path.rsplit("/", 1)[1]

        def around(behavior: Behavior) -> Behavior:
            async def observed(request: Any, context: grpc.aio.ServicerContext) -> Any:
                started, code = time.perf_counter(), grpc.StatusCode.UNKNOWN
                request_id = adopt_request_id(_incoming_id(context))
                context.set_trailing_metadata(((GRPC_METADATA_KEY, request_id),))
                try:
                    response = await behavior(request, context)
                    code = context.code() or grpc.StatusCode.OK
                    return response
                except grpc.aio.AbortError:
                    code = context.code() or grpc.StatusCode.UNKNOWN
                    raise
                except asyncio.CancelledError:  # the client cancelled, or the deadline passed
                    code = _ended_early(context)
                    raise
                except Exception:  # past ErrorMapper, only grpc's own: the status could not
                    code = grpc.StatusCode.CANCELLED  # go out, the client had reset the stream
                    raise
                finally:
                    self._finish(method, _model_of(call_message()), context, code, started)

            return observed

        return wrap(handler, around)

    def _finish(
        self,
        method: str,
        model: str,
        context: grpc.aio.ServicerContext,
        code: grpc.StatusCode,
        started: float,
    ) -> None:
        key = (model, method, code.name)
        children = self._children.get(key)
        if children is None:
            children = (
                self._metrics.grpc_requests.labels(model, method, code.name),
                self._metrics.latency.labels(model, f"/{SERVICE}/{method}"),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(time.perf_counter() - started)
        if not self._access_log:
            return
        peer = context.peer()
        if code is grpc.StatusCode.OK:
            access_logger.info('%s - "gRPC %s %s" OK', peer, method, model or "-")
        else:  # the one line a refused call gets: its code and why (nobody heard a cancel's)
            reason = "" if code is grpc.StatusCode.CANCELLED else context.details() or ""
            access_logger.info(
                '%s - "gRPC %s %s" %s %s', peer, method, model or "-", code.name, reason
            )


class ErrorMapper(MethodInterceptor):
    """Domain exceptions to status codes, once for every method."""

    def wrap_handler(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        def around(behavior: Behavior) -> Behavior:
            async def mapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
                try:
                    return await behavior(request, context)
                except grpc.aio.BaseError:
                    raise  # grpc's own: an abort (its status is sent), a call or server gone
                except Exception as exc:
                    code = status_code(exc)
                    if code is None:
                        logger.exception("unhandled error in gRPC %s", method)
                        code, sentence = grpc.StatusCode.INTERNAL, INTERNAL_DETAILS
                    else:
                        sentence = getattr(exc, "detail", None) or str(exc)
                        # the access log's line for the call says why (CallObserver)
                        logger.debug("gRPC %s refused, %s: %s", method, code.name, sentence)
                    await context.abort(code, sentence)

            return mapped

        return wrap(handler, around)
