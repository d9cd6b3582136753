"""A ``bench`` run as a results record: the served table, the ratios that judge it, and the
setting a reader needs, for one model or for the three protocols."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.bench_results import MACHINE, bench_result, load_result
from tests.helpers.results import check_document
from torchgate_bench.protocols import ProtocolComparison
from torchgate_bench.records import bench_record
from torchgate_bench.results import ResultsRun


def test_one_model_is_a_row_per_scenario_and_one_for_raw(tmp_path: Path) -> None:
    result = bench_result()
    result.batching_rounds = [(300.0, 100.0), (200.0, 100.0), (500.0, 100.0)]
    record = bench_record(result, random_weights=["alexnet"])
    document = check_document(ResultsRun(tmp_path, machine=MACHINE).document(record), "models")
    assert document["title"] == "alexnet at c=8: served against raw in-process"
    on, off, raw = document["rows"]
    assert on[:3] == ["batching on", 80.0, 80.0] and off[0] == "batching off"
    assert raw[0] == "raw in-process" and raw[2] == 100.0
    assert document["ratios"]["served / raw (batching on)"] == 0.8
    assert document["ratios"]["batching on / off (median of rounds)"] == 3.0
    assert {"round": 2, "batching on images/s": 200.0, "batching off images/s": 100.0} in (
        document["rounds"]
    )
    assert any("random weights for alexnet" in note for note in document["notes"])


def test_the_protocols_are_a_row_each_with_their_ratio_to_v1(tmp_path: Path) -> None:
    result = bench_result()
    result.scenarios = []
    rounds = [{"v1": 100.0, "v2": 110.0, "grpc": 150.0}, {"v1": 100.0, "v2": 90.0, "grpc": 130.0}]
    result.protocols = ProtocolComparison(
        {name: load_result(200) for name in ("v1", "v2", "grpc")},
        {"v1": 1.0, "v2": 1.0, "grpc": 0.5},
        rounds,
    )
    record = bench_record(result, random_weights=[])
    document = check_document(ResultsRun(tmp_path, machine=MACHINE).document(record), "protocols")
    assert [row[0] for row in document["rows"]] == ["v1", "v2", "grpc"]
    assert document["rows"][2][-1] == 2.5  # 0.5 s of server CPU over 200 requests
    assert document["ratios"] == {
        "v2 / v1 (median of rounds)": 1.0,
        "grpc / v1 (median of rounds)": 1.4,
    }
    assert document["rounds"][0] == {"round": 1, "v1": 100.0, "v2": 110.0, "grpc": 150.0}
