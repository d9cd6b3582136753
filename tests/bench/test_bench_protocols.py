"""The three protocols' requests for one image, the gRPC load generator, and the comparison."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from app.api.grpc.proto import inference_pb2 as pb
from tests.helpers.toy_servers import EchoServer, MetricsServer
from torchgate_bench.cli import _random_weights
from torchgate_bench.config import BenchConfig
from torchgate_bench.images import input_file_for
from torchgate_bench.latency import LatencySummary
from torchgate_bench.load import LoadPlan, LoadResult, LoadTarget
from torchgate_bench.loadgen import drive
from torchgate_bench.protocols import (
    MODEL_INFER,
    ProtocolComparison,
    alternate,
    build_requests,
    target_for,
)
from torchgate_bench.server import ServerProcess, free_port


@pytest.mark.parametrize("model", ["cnn", "resnet101"])  # the two: c=32 and c=8
def test_each_protocol_carries_the_same_image(model: str, tmp_path: Path) -> None:
    upload = input_file_for(model)  # a 28x28 PNG, a 500x375 JPEG photo
    v1 = LoadTarget("", "POST", tmp_path / "v1.bin", upload.content_type, 2)
    requests = build_requests(model, upload, v1, 2, tmp_path)
    assert requests["v1"] is v1
    v2 = requests["v2"]
    body = v2.body_path.read_bytes() if v2.body_path else b""
    (length,) = [
        int(value) for name, value in v2.headers if name == "Inference-Header-Content-Length"
    ]
    header = orjson.loads(body[:length])
    element = len(upload.data).to_bytes(4, "little") + upload.data
    assert header["inputs"][0]["shape"] == [2] and body[length:] == element * 2
    message = pb.ModelInferRequest.FromString(requests["grpc"].body_path.read_bytes())  # type: ignore[union-attr]
    assert message.model_name == model and list(message.inputs[0].shape) == [2]
    assert message.raw_input_contents[0] == element * 2
    server = ServerProcess({}, port=8000, grpc_port=8001)
    assert target_for("grpc", requests["grpc"], model, server).url == "grpc://127.0.0.1:8001"
    v2_url = f"http://127.0.0.1:8000/v2/models/{model}/infer"
    assert target_for("v2", v2, model, server).url == v2_url


def test_the_output_names_the_models_served_with_random_weights(tmp_path: Path) -> None:
    alone = BenchConfig("resnet101", served_models=("resnet101",), protocol="all")
    assert _random_weights(alone) == ["resnet101"]
    with_cnn = BenchConfig("cnn", served_models=("cnn", "alexnet"))
    assert _random_weights(with_cnn) == ["alexnet"]  # the cnn has its trained checkpoint
    assert _random_weights(BenchConfig("resnet101", weights_dir=tmp_path)) == []  # real files


@pytest.mark.integration
@pytest.mark.parametrize(("message", "errors"), [(b"ok", False), (b"fail", True)])
def test_the_grpc_generator_counts_answers_and_errors(
    echo_server: EchoServer, tmp_path: Path, message: bytes, errors: bool
) -> None:
    body = tmp_path / "message.bin"
    body.write_bytes(message)
    target = LoadTarget(f"grpc://127.0.0.1:{echo_server.port}", MODEL_INFER, body, None, 1)
    result = asyncio.run(drive(target, LoadPlan(concurrency=3, duration_s=0.5)))
    assert result.tool == "grpc.aio" and result.requests > 0
    assert result.errors == (result.requests if errors else 0)
    assert result.client_cpu_s is not None and result.client_cpu_s > 0


def test_a_refused_grpc_port_is_a_transport_error(tmp_path: Path) -> None:
    body = tmp_path / "message.bin"
    body.write_bytes(b"")
    target = LoadTarget(f"grpc://127.0.0.1:{free_port()}", MODEL_INFER, body)
    result = asyncio.run(drive(target, LoadPlan(concurrency=1, duration_s=0.3, timeout_s=1)))
    assert result.requests > 0 and set(result.error_kinds or {}) == {"transport"}


def _load(requests: int) -> LoadResult:
    latency = LatencySummary(1.0, 1.0, 1.0, 1.0, 1.0)
    return LoadResult("x", requests, 0, 1.0, latency, 1, None, client_cpu_s=requests / 1000)


def test_the_comparison_gives_median_ratios_and_cpu_per_request() -> None:
    rounds = [{"v1": 100.0, "grpc": 50.0}, {"v1": 100.0, "grpc": 80.0}, {"v1": 50.0, "grpc": 60.0}]
    comparison = ProtocolComparison(
        {"v1": _load(250), "grpc": _load(190)}, {"v1": 1.0, "grpc": 1.9}, rounds
    )
    assert comparison.ratio("grpc") == pytest.approx(0.8)
    assert comparison.ratio("v1") == 1.0
    assert comparison.cpu_ms_per_request("grpc") == pytest.approx(10.0)
    assert comparison.client_cpu_ms_per_request("v1") == pytest.approx(1.0)


def _failures(count: int) -> str:
    return (
        "# TYPE torchgate_grpc_requests_total counter\n"
        'torchgate_grpc_requests_total{model="cnn",method="ModelInfer",code="RESOURCE_EXHAUSTED"}'
        f" {count}.0\n"
    )


@pytest.mark.integration
def test_rounds_alternate_and_grpc_failures_come_from_the_servers_count(
    metrics_server: MetricsServer,
) -> None:
    """Each round runs every protocol once, in order; a gRPC slice's failures are what the
    server counted during it (its load generator saw HTTP 200s), and its CPU is the slice's."""
    metrics_server.text = _failures(5)  # failures from before the bench: not this slice's
    order: list[str] = []

    def driver(target: LoadTarget, plan: LoadPlan) -> LoadResult:
        order.append(target.url)
        metrics_server.cpu += 2.0
        if target.url == "grpc":
            metrics_server.text = _failures(5 + 3 * order.count("grpc"))  # 3 fail per slice
        return _load(100)

    targets = {"v1": LoadTarget("v1"), "grpc": LoadTarget("grpc")}
    plan = LoadPlan(concurrency=1, duration_s=2.0)
    comparison = alternate(targets, metrics_server, driver, plan, 2, lambda r: r[-1])  # type: ignore[arg-type]
    assert order == ["v1", "grpc", "v1", "grpc"]
    assert comparison.results["grpc"].errors == 3 and comparison.results["v1"].errors == 0
    assert comparison.cpu_s == {"v1": 4.0, "grpc": 4.0}
