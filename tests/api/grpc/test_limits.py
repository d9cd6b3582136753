"""The bounds of a real server with small gRPC limits, under load: unfinished uploads on many
streams, streams past a connection's limit, thousands of calls on one channel, and hundreds of
cancellations and short deadlines among them."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import grpc
import pytest
from h2.settings import SettingCodes

from app.api.grpc.proto import inference_pb2_grpc
from tests.helpers.grpc_servers import (
    DEADLINE_EXCEEDED,
    INFER,
    MAX_RPCS,
    MAX_STREAMS,
    MESSAGE_TIMEOUT_S,
    REFUSED_STREAM,
    RESOURCE_EXHAUSTED,
    LimitedServer,
    cnn_request,
    infer_cnn,
)
from tests.helpers.h2client import RawH2, grpc_frame
from tests.helpers.metrics import metric_total

pytestmark = pytest.mark.integration  # a real server


def test_unfinished_uploads_are_bounded_and_then_timed_out(limited_server: LimitedServer) -> None:
    """4 connections x 32 streams x 2 MiB messages that never finish: at most MAX_RPCS calls
    read (the others are refused at once), so the process holds about MAX_RPCS x 2 MiB, not
    all 256 MiB; after the message timeout those calls end and the server serves on."""
    size = 2 * 2**20
    payload = grpc_frame(b"", declared=size) + bytes(size - 1)  # never the last byte
    before = limited_server.rss_mib()
    clients = [RawH2(limited_server.target) for _ in range(4)]
    sent: dict[tuple[int, int], int] = {}
    try:
        for number, client in enumerate(clients):
            for _ in range(32):
                sent[number, client.open(INFER)] = 0
        deadline, peak = time.monotonic() + 10, before
        while time.monotonic() < deadline:
            for (number, stream_id), offset in sent.items():
                client, stream = clients[number], clients[number].streams[stream_id]
                if stream.status is None and stream.reset is None and offset < len(payload):
                    sent[number, stream_id] += client.send(stream_id, payload[offset:])
            for client in clients:
                client.receive(0.01)
            peak = max(peak, limited_server.rss_mib())
            if sum(offset == len(payload) for offset in sent.values()) == MAX_RPCS:
                break
        outcomes = Counter(clients[n].streams[s].status for n, s in sent)
        held = sum(offset == len(payload) for offset in sent.values())
        assert held == MAX_RPCS and outcomes[None] == MAX_RPCS, outcomes
        assert outcomes[RESOURCE_EXHAUSTED] == len(sent) - MAX_RPCS
        growth = peak - before
        assert growth < MAX_RPCS * size / 2**20 + 64, (before, peak)
        with pytest.raises(grpc.RpcError) as refused:  # every call in progress is taken
            infer_cnn(limited_server.target)
        assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        deadline = time.monotonic() + MESSAGE_TIMEOUT_S + 5
        while time.monotonic() < deadline:
            for client in clients:
                client.receive(0.02)
            timed_out = Counter(clients[n].streams[s].status for n, s in sent)
            if timed_out[DEADLINE_EXCEEDED] == MAX_RPCS:
                break
        assert timed_out[DEADLINE_EXCEEDED] == MAX_RPCS, timed_out
    finally:
        for client in clients:
            client.close()
    assert infer_cnn(limited_server.target).model_name == "cnn"
    print(f"unfinished uploads: RSS {before:.0f} -> {peak:.0f} MiB ({growth:.0f} MiB held)")


def test_streams_beyond_the_limit_of_a_connection_are_refused(
    limited_server: LimitedServer,
) -> None:
    client = RawH2(limited_server.target)
    try:
        client.receive(0.3)
        assert client.conn.remote_settings.max_concurrent_streams == MAX_STREAMS
        # a client that ignores the server's SETTINGS: the streams past it are refused
        client.conn.remote_settings._settings[SettingCodes.MAX_CONCURRENT_STREAMS] = [1000]
        streams = [client.open(INFER, flush=False) for _ in range(MAX_STREAMS + 8)]
        client.flush()  # in one write: the server sees them all before answering any
        client.receive(1)
        refused = [stream for stream in streams if client.streams[stream].reset == REFUSED_STREAM]
        assert refused == streams[MAX_STREAMS:]  # those past the limit, and only those
    finally:
        client.close()


async def _many_calls(target: str, calls: int, in_flight: int) -> Counter[str]:
    codes: Counter[str] = Counter()
    slots = asyncio.Semaphore(in_flight)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = inference_pb2_grpc.GRPCInferenceServiceStub(channel)
        request = cnn_request()

        async def one() -> None:
            async with slots:
                try:
                    await stub.ModelInfer(request, timeout=30)
                    codes["OK"] += 1
                except grpc.aio.AioRpcError as exc:
                    codes[exc.code().name] += 1

        await asyncio.gather(*(one() for _ in range(calls)))
    return codes


def test_one_channel_makes_thousands_of_calls_without_a_failure(
    limited_server: LimitedServer,
) -> None:
    started = time.monotonic()
    codes = asyncio.run(_many_calls(limited_server.target, 5000, 32))
    assert codes == {"OK": 5000}
    print(f"5000 calls, 32 in flight, one channel: {time.monotonic() - started:.1f} s")


async def _cancel_and_expire(target: str) -> tuple[Counter[str], Counter[str]]:
    """Per kind of call: normal ones, ones cancelled mid-flight, ones with a 1-20 ms deadline,
    interleaved on one channel, 24 in flight."""
    normal, others = Counter[str](), Counter[str]()
    slots = asyncio.Semaphore(24)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = inference_pb2_grpc.GRPCInferenceServiceStub(channel)
        request = cnn_request(images=8)  # 24 x 8 items: well within the model's queue

        async def call(kind: str, number: int) -> None:
            timeout = 0.001 * (1 + number % 20) if kind == "deadline" else 30
            async with slots:
                rpc = stub.ModelInfer(request, timeout=timeout)
                if kind == "cancel":
                    await asyncio.sleep(0.001 * (number % 10))
                    rpc.cancel()
                try:
                    await rpc
                    (normal if kind == "normal" else others)["OK"] += 1
                except asyncio.CancelledError:
                    others["CANCELLED"] += 1
                except grpc.aio.AioRpcError as exc:
                    (normal if kind == "normal" else others)[exc.code().name] += 1

        kinds = ("normal", "cancel", "deadline")
        await asyncio.gather(*(call(kinds[n % 3], n // 3) for n in range(900)))
    return normal, others


def test_cancellations_and_short_deadlines_do_not_hurt_other_calls(
    limited_server: LimitedServer,
) -> None:
    def ended_early() -> float:
        text = limited_server.metrics()
        return sum(
            metric_total(text, "torchgate_grpc_requests", method="ModelInfer", code=code)
            for code in ("CANCELLED", "DEADLINE_EXCEEDED")
        )

    before = ended_early()
    normal, others = asyncio.run(_cancel_and_expire(limited_server.target))
    assert normal == {"OK": 300}, normal
    assert others["CANCELLED"] + others["DEADLINE_EXCEEDED"] > 100, others
    time.sleep(0.5)
    assert ended_early() > before  # those the server saw end early are counted
    assert infer_cnn(limited_server.target).model_name == "cnn"
