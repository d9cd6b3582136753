"""grpc method handlers rebuilt around their behavior, once per method, for the interceptors.

grpcio asks every interceptor for the handler of every call, but a method's handler never
changes: ``MethodInterceptor`` wraps it on the first call and keeps it (only for methods the
server has, so unknown names sent by a client cannot grow what it keeps).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

Behavior = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]]

# The attribute that holds a handler's behavior, and the factory that rebuilds it, per
# (request_streaming, response_streaming).
_KINDS = {
    (False, False): ("unary_unary", grpc.unary_unary_rpc_method_handler),
    (False, True): ("unary_stream", grpc.unary_stream_rpc_method_handler),
    (True, False): ("stream_unary", grpc.stream_unary_rpc_method_handler),
    (True, True): ("stream_stream", grpc.stream_stream_rpc_method_handler),
}


def wrap(
    handler: grpc.RpcMethodHandler, around: Callable[[Behavior], Behavior]
) -> grpc.RpcMethodHandler:
    """``handler`` with its behavior wrapped by ``around``, when that behavior is a coroutine
    function (an async generator, as reflection's, is left as it is)."""
    attribute, factory = _KINDS[(handler.request_streaming, handler.response_streaming)]
    behavior = getattr(handler, attribute)
    if not inspect.iscoroutinefunction(behavior):
        return handler
    return factory(
        around(behavior),
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


class MethodInterceptor(grpc.aio.ServerInterceptor):
    """An interceptor that rebuilds each method's handler once (``wrap_handler``)."""

    def __init__(self) -> None:
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self, continuation: Continuation, details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        handler = self._handlers.get(details.method)
        if handler is None:
            found = await continuation(details)
            if found is None:  # no such method: grpcio answers UNIMPLEMENTED
                return None
            handler = self._handlers[details.method] = self.wrap_handler(details.method, found)
        return handler

    def wrap_handler(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        raise NotImplementedError
