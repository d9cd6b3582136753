"""The gRPC side of the load generator: one prepared message, replayed as bytes.

Each worker has a channel (a connection) of its own, as each HTTP worker has its connection, so
``serve --workers N`` spreads them as it spreads HTTP ones. The message is sent as the prepared
bytes and the answer is not parsed: the client costs as little per call as it can.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import grpc

from torchgate_bench.load import GRPC_SCHEME, LoadPlan, LoadTarget, Send


@asynccontextmanager
async def grpc_senders(
    target: LoadTarget, message: bytes, plan: LoadPlan
) -> AsyncIterator[list[Send]]:
    address = target.url.removeprefix(GRPC_SCHEME)
    options = [
        ("grpc.use_local_subchannel_pool", 1),  # a connection per channel, not one shared
        ("grpc.max_send_message_length", -1),
        ("grpc.max_receive_message_length", -1),
    ]
    async with AsyncExitStack() as stack:
        senders = []
        for _ in range(plan.concurrency):
            channel = await stack.enter_async_context(
                grpc.aio.insecure_channel(address, options=options)
            )
            # no serializers: the prepared bytes go out as they are, the answer stays bytes
            call = channel.unary_unary(target.method)
            senders.append(_sender(call, message, plan.timeout_s))
        yield senders


def _sender(call: grpc.aio.UnaryUnaryMultiCallable, message: bytes, timeout_s: float) -> Send:
    async def send() -> str | None:
        try:
            await call(message, timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.DEADLINE_EXCEEDED:
                return "timeout"
            if exc.code() is grpc.StatusCode.UNAVAILABLE:
                return "transport"
            return "status"
        return None

    return send
