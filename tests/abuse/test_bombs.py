"""Small requests that cost the server much: gzip bombs on v2 REST and gRPC, and JSON that is slow
to scan. Each is refused, its work done off the event loop, while /healthz stays fast."""

from __future__ import annotations

import gzip
from concurrent.futures import ThreadPoolExecutor

import grpc
import httpx
import pytest

from app.api.grpc.proto import inference_pb2 as pb
from app.api.grpc.proto.inference_pb2_grpc import GRPCInferenceServiceStub
from tests.helpers.abuse import AbuseServer, Figures, Watch, assert_service_held

pytestmark = pytest.mark.integration

INFER = "/v2/models/cnn/infer"
BOMB = gzip.compress(b"\0" * (30 * 2**20), compresslevel=9)  # 30 KB on the wire, 30 MiB inflated
BRACKETS = b'{"inputs": [' + b"[]," * (2**20) + b"[]]}"  # 3 MiB of [],


def _post_many(url: str, content: bytes, headers: dict[str, str], times: int) -> list[int]:
    def post(_: int) -> int:
        return httpx.post(url, content=content, headers=headers, timeout=60).status_code

    with ThreadPoolExecutor(times) as pool:
        return list(pool.map(post, range(times)))


def test_gzip_bombs_on_v2_rest_are_refused_off_the_loop(
    abuse_server: AbuseServer, record_figures: list[Figures]
) -> None:
    headers = {"content-type": "application/json", "content-encoding": "gzip"}
    with Watch("gzip bombs on v2 REST (3 x 8)", abuse_server.base_url, abuse_server.pid) as watch:
        statuses = []
        for _ in range(3):
            statuses += _post_many(abuse_server.base_url + INFER, BOMB, headers, 8)
    figures = watch.figures()
    record_figures.append(figures)
    assert_service_held(figures)
    assert set(statuses) == {413}, statuses
    assert len(BOMB) < 64 * 1024


def test_gzip_bombs_over_grpc_are_refused(
    abuse_server: AbuseServer, record_figures: list[Figures]
) -> None:
    """A message that inflates past the message limit: RESOURCE_EXHAUSTED, nothing else hurt."""
    message = pb.ModelInferRequest(model_name="cnn")
    message.inputs.add(name="input", datatype="FP32", shape=[1, 1, 28, 28])
    message.raw_input_contents.append(b"\0" * (30 * 2**20))
    codes = []
    with (
        Watch("gzip bombs over gRPC (24)", abuse_server.base_url, abuse_server.pid) as watch,
        grpc.insecure_channel(
            abuse_server.grpc_target,
            compression=grpc.Compression.Gzip,
            options=[("grpc.max_send_message_length", 64 * 2**20)],
        ) as channel,
    ):
        stub = GRPCInferenceServiceStub(channel)

        def call(_: int) -> grpc.StatusCode:
            try:
                stub.ModelInfer(message, timeout=30)
            except grpc.RpcError as error:
                return error.code()
            return grpc.StatusCode.OK

        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(call, range(24)))
    figures = watch.figures()
    record_figures.append(figures)
    assert_service_held(figures)
    assert set(codes) == {grpc.StatusCode.RESOURCE_EXHAUSTED}, codes


def test_json_that_is_slow_to_scan_is_refused_off_the_loop(
    abuse_server: AbuseServer, record_figures: list[Figures]
) -> None:
    """3 MiB of [], on v1 as it is, and on v2 gzipped to a few kilobytes."""
    zipped = gzip.compress(BRACKETS, compresslevel=9)
    v2_headers = {"content-type": "application/json", "content-encoding": "gzip"}
    v1 = abuse_server.base_url + "/v1/models/cnn/predict"
    with Watch("JSON slow to scan (v1, v2 gzip)", abuse_server.base_url, abuse_server.pid) as watch:
        statuses = []
        for _ in range(2):
            statuses += _post_many(v1, BRACKETS, {"content-type": "application/json"}, 8)
            statuses += _post_many(abuse_server.base_url + INFER, zipped, v2_headers, 8)
    figures = watch.figures()
    record_figures.append(figures)
    assert_service_held(figures)
    assert statuses and all(400 <= status < 500 for status in statuses), statuses
    assert len(zipped) < 64 * 1024
