"""Read the one request message of every unary-request method here, not in grpcio's loop.

Why: grpcio's aio server reads a unary call's message before any application code runs. A call
that ends without one (HEADERS with END_STREAM, no DATA) is then left unanswered for as long as
its connection lives, holding one of the calls in progress (TORCHGATE_GRPC_MAX_CONCURRENT_RPCS),
and a message its deserializer cannot parse is answered UNKNOWN, with a traceback in the log.
So each such method is served as request-streaming (the same bytes on the wire) and its
message read here: none, or one that does not parse, is INVALID_ARGUMENT at once; one that does
not arrive within TORCHGATE_GRPC_MESSAGE_TIMEOUT_S is DEADLINE_EXCEEDED, which frees the call's
slot; and its bytes are taken from the process's upload budget, shared with HTTP, while the
call is served (RESOURCE_EXHAUSTED when they do not fit).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from contextvars import ContextVar
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from app.api.grpc.handlers import MethodInterceptor
from app.api.upload_budget import UploadBudget
from app.errors import BadRequest

Deserializer = Callable[[bytes], Any] | None
_message: ContextVar[Any] = ContextVar("grpc_request_message", default=None)


def call_message() -> Any:
    """The decoded request of the call being served (None before it is read): what the
    interceptors outside this one label the call with."""
    return _message.get()


class UnaryRequestInterceptor(MethodInterceptor):
    """Serves every unary-request method as request-streaming, reading its message itself."""

    def __init__(self, budget: UploadBudget, timeout_s: float) -> None:
        super().__init__()
        self._budget = budget
        self._timeout_s = timeout_s

    def wrap_handler(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        if handler.request_streaming:
            return handler
        behavior = handler.unary_stream if handler.response_streaming else handler.unary_unary
        if not (inspect.iscoroutinefunction(behavior) or inspect.isasyncgenfunction(behavior)):
            return handler  # a synchronous method: grpcio's thread pool serves it (none here)
        received = self._received(method, handler.request_deserializer)

        if not handler.response_streaming:

            async def unary(requests: object, context: grpc.aio.ServicerContext) -> Any:
                async with received(context) as request:
                    return await behavior(request, context)

            return grpc.stream_unary_rpc_method_handler(
                unary, response_serializer=handler.response_serializer
            )

        async def streaming(requests: object, context: grpc.aio.ServicerContext) -> None:
            async with received(context) as request:
                if inspect.isasyncgenfunction(behavior):
                    async for response in behavior(request, context):
                        await context.write(response)
                else:
                    await behavior(request, context)

        return grpc.stream_stream_rpc_method_handler(
            streaming, response_serializer=handler.response_serializer
        )

    def _received(
        self, method: str, deserialize: Deserializer
    ) -> Callable[[grpc.aio.ServicerContext], AbstractAsyncContextManager[Any]]:
        @asynccontextmanager
        async def received(context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            raw = await self._read(context)
            self._budget.take(len(raw))
            try:
                request = _decode(method, deserialize, raw)
                _message.set(request)
                yield request
            finally:
                self._budget.give_back(len(raw))

        return received

    async def _read(self, context: grpc.aio.ServicerContext) -> bytes:
        try:
            raw = await asyncio.wait_for(context.read(), self._timeout_s)
        except TimeoutError:
            await context.abort(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"the request message did not arrive within {self._timeout_s:g} s "
                "(TORCHGATE_GRPC_MESSAGE_TIMEOUT_S); send it whole, promptly.",
            )
        if raw is grpc.aio.EOF:
            raise BadRequest("the call carries no request message; a unary method takes one.")
        return raw


def _decode(method: str, deserialize: Deserializer, raw: bytes) -> Any:
    if deserialize is None:
        return raw
    try:
        return deserialize(raw)
    except DecodeError:
        raise BadRequest(
            f"the request message of {method} is not valid protobuf for that method "
            f"({len(raw):,} bytes); send the message its .proto defines."
        ) from None
