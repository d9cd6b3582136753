"""The gRPC side of the bench's C load generator: h2load replaying a prepared message."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.toy_servers import EchoServer, MetricsServer
from torchgate_bench.h2load import find_h2load, framed, parse_output, run_h2load
from torchgate_bench.load import LoadPlan, LoadTarget
from torchgate_bench.protocols import MODEL_INFER, failed_calls

STDOUT = """\
finished in 8.00s, 1965.12 req/s, 648.21KB/s
requests: 15721 total, 15753 started, 15721 done, 15720 succeeded, 1 failed, 0 errored, 0 timeout
status codes: 15720 2xx, 0 3xx, 0 4xx, 1 5xx
time for request:     3.66ms     42.82ms     14.74ms      3.57ms    73.66%
"""


def test_a_message_is_framed_as_grpc_sends_it() -> None:
    assert framed(b"abc") == b"\x00\x00\x00\x00\x03abc"
    assert framed(b"") == b"\x00\x00\x00\x00\x00"


def test_parse_reads_counts_and_the_per_request_log() -> None:
    log = "".join(f"1764600000{i:06d}\t200\t{1000 * (i + 1)}\n" for i in range(100))
    result = parse_output(STDOUT, log + "1764600001000000\t503\t5\n", images_per_request=1)
    assert result.tool == "h2load" and result.requests == 15721 and result.errors == 1
    assert result.duration_s == 8.0 and result.error_kinds == {"status": 1}
    # percentiles of the 200s only: 1..100 ms
    assert result.latency.p50_ms == 50.0 and result.latency.p99_ms == 99.0
    assert result.latency.max_ms == 100.0 and result.latency.mean_ms == 50.5


def test_parse_without_a_summary_says_so() -> None:
    with pytest.raises(ValueError, match="no summary"):
        parse_output("connection refused", "")


@pytest.mark.integration
@pytest.mark.skipif(find_h2load() is None, reason="h2load is not installed (nghttp2-client)")
def test_h2load_sends_the_very_message_as_grpc_calls(
    echo_server: EchoServer, tmp_path: Path
) -> None:
    message = b"\x0a\x03cnn" + bytes(range(256)) * 4  # binary, and longer than one read
    body = tmp_path / "message.bin"
    body.write_bytes(message)
    target = LoadTarget(f"grpc://127.0.0.1:{echo_server.port}", MODEL_INFER, body, None, 1)
    executable = find_h2load()
    assert executable is not None
    plan = LoadPlan(concurrency=2, duration_s=1.5)  # h2load takes whole units: 1500ms
    result = run_h2load(target, plan, tmp_path, executable)
    assert result.requests > 0 and result.errors == 0 and result.tool == "h2load"
    # the server decoded every call's message as exactly the prepared bytes
    assert set(echo_server.received) == {message}
    assert echo_server.received[message] >= result.requests
    assert result.latency.p50_ms > 0 and result.client_cpu_s is not None


@pytest.mark.integration
def test_failed_calls_are_counted_from_the_servers_metrics(
    metrics_server: MetricsServer,
) -> None:
    """h2load sees a failed gRPC call as an HTTP 200; the server's counter knows better. The
    calls h2load itself resets when its time is up (CANCELLED) are not failures."""
    metrics_server.text = (
        "# TYPE torchgate_grpc_requests_total counter\n"
        'torchgate_grpc_requests_total{model="cnn",method="ModelInfer",code="OK"} 90.0\n'
        'torchgate_grpc_requests_total{model="cnn",method="ModelInfer",code="NOT_FOUND"} 3.0\n'
        'torchgate_grpc_requests_total{model="cnn",method="ServerLive",code="UNAVAILABLE"} 5.0\n'
        'torchgate_grpc_requests_total{model="x",method="ModelInfer",code="INVALID_ARGUMENT"} 4.0\n'
        'torchgate_grpc_requests_total{model="cnn",method="ModelInfer",code="CANCELLED"} 12.0\n'
    )
    assert failed_calls(metrics_server) == 7  # type: ignore[arg-type]
