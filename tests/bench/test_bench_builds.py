"""bench-builds: the requests it sends and the record it writes from the rounds it measured."""

from __future__ import annotations

from pathlib import Path

from app.api.grpc.proto import inference_pb2 as pb
from torchgate_bench.builds import BuildsOptions, _record, scenarios
from torchgate_bench.results import ResultsRun
from torchgate_bench.server import ServerProcess


def test_every_scenario_aims_at_the_server_it_is_given(tmp_path: Path) -> None:
    chosen = scenarios(tmp_path)
    server = ServerProcess(env={}, port=8123, grpc_port=8124)
    targets = {s.name: s.target(server) for s in chosen}
    assert targets["cnn raw predict"].url == "http://127.0.0.1:8123/v1/models/cnn/predict"
    assert targets["cnn raw predict"].body_path.read_bytes().startswith(b"\x89PNG")
    assert targets["resnet101 raw predict"].content_type == "image/jpeg"
    assert targets["/healthz"].method == "GET"
    grpc = targets["cnn gRPC ModelInfer"]
    assert grpc.url == "grpc://127.0.0.1:8124"
    message = pb.ModelInferRequest.FromString(grpc.body_path.read_bytes())
    assert message.model_name == "cnn" and message.inputs[0].datatype == "BYTES"
    assert [s.concurrency for s in chosen] == [32, 8, 32, 32]


def test_the_record_has_a_row_per_scenario_and_median_ratios_of_rounds(tmp_path: Path) -> None:
    chosen = scenarios(tmp_path)
    names = [s.name for s in chosen]
    rates = {n: {"baseline": [100.0, 200.0, 100.0], "current": [90.0, 100.0, 110.0]} for n in names}
    p99 = {n: {"baseline": [10.0, 12.0, 11.0], "current": [9.0, 10.0, 30.0]} for n in names}
    errors = {n: {"baseline": 0, "current": 1} for n in names}
    cold = {"baseline": [5.0, 6.0, 7.0], "current": [6.6, 6.0, 6.9]}
    options = BuildsOptions(baseline=tmp_path / "old", current=tmp_path / "new")
    record = _record(chosen, rates, p99, errors, cold, [], ["resnet101"], options)
    first = record.rows[0]
    # round ratios 0.9, 0.5, 1.1: their median, not the ratio of the medians (100 / 100)
    assert first[:4] == ["cnn raw predict c=32", 100.0, 100.0, 0.9]
    assert first[4:] == [11.0, 10.0, 1]
    assert record.rows[-1][:4] == ["cold start to /readyz (s)", 6.0, 6.6, 1.1]
    document = ResultsRun(tmp_path).document(record)
    assert document["kind"] == "builds" and len(document["rows"]) == len(chosen) + 1
    assert any("random weights for: resnet101" in note for note in document["notes"])
