"""HTTP/2 clients that cost the gRPC server without calling it properly: PING and SETTINGS floods
from a peer that never reads, calls whose message never ends, and a reader with a zero window.
grpcio's own limits cut them; /healthz, HTTP predicts and other gRPC clients carry on."""

from __future__ import annotations

import time

import grpc
import h2.settings
import pytest

from app.api.grpc.proto import inference_pb2 as pb
from app.api.grpc.proto.inference_pb2_grpc import GRPCInferenceServiceStub
from tests.helpers.abuse import LIMITS, AbuseServer, Figures, Watch, assert_service_held
from tests.helpers.h2client import RawH2, grpc_frame
from tests.helpers.images import garment_png

pytestmark = pytest.mark.integration

MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"
MESSAGE_TIMEOUT_S = float(LIMITS["TORCHGATE_GRPC_MESSAGE_TIMEOUT_S"])


def _infer_message() -> bytes:
    image = garment_png()
    message = pb.ModelInferRequest(model_name="cnn")
    message.inputs.add(name="image", datatype="BYTES", shape=[1])
    message.raw_input_contents.append(len(image).to_bytes(4, "little") + image)
    return message.SerializeToString()


def _another_client_is_served(server: AbuseServer) -> None:
    with grpc.insecure_channel(server.grpc_target) as channel:
        response = GRPCInferenceServiceStub(channel).ModelInfer(
            pb.ModelInferRequest.FromString(_infer_message()), timeout=10
        )
    assert response.model_name == "cnn"


def _finish(watch: Watch, server: AbuseServer, record: list[Figures]) -> Figures:
    _another_client_is_served(server)
    figures = watch.figures()
    record.append(figures)
    assert_service_held(figures)
    return figures


def test_ping_and_settings_floods_from_a_peer_that_never_reads(
    abuse_server: AbuseServer, record_figures: list[Figures]
) -> None:
    with Watch("gRPC PING + SETTINGS floods", abuse_server.base_url, abuse_server.pid) as watch:
        peers = [RawH2(abuse_server.grpc_target) for _ in range(4)]
        for peer in peers:
            for number in range(20_000):
                if peer.closed:
                    break
                if number % 2:
                    peer.ping()
                else:
                    peer.conn.update_settings({h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 8192})
                    peer.flush()
        time.sleep(1)
        ended = []
        for peer in peers:
            peer.receive(3)
            ended.append(peer.closed or peer.goaway is not None)
            peer.close()
    figures = _finish(watch, abuse_server, record_figures)
    assert all(ended), "a flooding peer was kept"
    assert figures.rss_growth_mib < 100


def test_calls_whose_message_never_ends_are_timed_out(
    abuse_server: AbuseServer, record_figures: list[Figures]
) -> None:
    message = _infer_message()
    with Watch("gRPC messages that never end", abuse_server.base_url, abuse_server.pid) as watch:
        peers = [RawH2(abuse_server.grpc_target) for _ in range(4)]
        streams = []
        for peer in peers:
            for _ in range(16):
                stream_id = peer.open(MODEL_INFER)
                peer.send(stream_id, grpc_frame(message, declared=len(message) + 1000)[:-10])
                streams.append((peer, stream_id))
        started = time.monotonic()
        answers = [peer.wait(stream_id, MESSAGE_TIMEOUT_S + 5) for peer, stream_id in streams]
        waited = time.monotonic() - started
        for peer in peers:
            peer.close()
    _finish(watch, abuse_server, record_figures)
    codes = {answer.status for answer in answers if answer.status is not None}
    expected = {grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert codes <= {code.value[0] for code in expected}, codes
    # every call was answered (a status, then RST_STREAM NO_ERROR) or refused (a reset)
    assert all(answer.status is not None or answer.reset is not None for answer in answers)
    assert waited <= MESSAGE_TIMEOUT_S + 5


def test_a_reader_with_a_zero_window_holds_little(
    abuse_server: AbuseServer, record_figures: list[Figures]
) -> None:
    """Answers the server may not send stay bounded by the calls limit, not by the client."""
    message = grpc_frame(_infer_message())
    with Watch("gRPC zero-window reader", abuse_server.base_url, abuse_server.pid) as watch:
        peer = RawH2(abuse_server.grpc_target)
        peer.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
        peer.flush()
        for _ in range(64):
            stream_id = peer.open(MODEL_INFER)
            peer.send(stream_id, message, end_stream=True)
        time.sleep(3)
        peer.close()
    figures = _finish(watch, abuse_server, record_figures)
    assert figures.rss_growth_mib < 100
