"""A short real run of ``bench --peer triton|kserve`` against each peer whose venv is here:
torchgate (the cnn alone, to keep it short) and the peer started for real, every server
answering the same request over REST and gRPC, one round of a second per series, the record
carrying the ratios. CI has no peer venvs: each test then says how to make one."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.programs import require_binary
from tests.helpers.repo import REPO_ROOT
from tests.helpers.results import check_document
from torchgate_bench.peers.requirements import DEFAULT_V2_PYTHON, V2_SETUP
from torchgate_bench.peers.v2_options import V2Options
from torchgate_bench.peers.v2_records import KIND, v2_peers_record
from torchgate_bench.results import ResultsRun


def _require_venv(peer: str) -> None:
    if not DEFAULT_V2_PYTHON[peer].exists():
        pytest.skip(f"{peer}'s venv is not here; set it up with: {V2_SETUP[peer]}")


@pytest.mark.parametrize("peer", ["triton", "kserve"])
def test_a_real_run_against_the_peer(peer: str, tmp_path: Path) -> None:
    _require_venv(peer)
    require_binary("wrk", "wrk")
    require_binary("h2load", "nghttp2-client")
    from torchgate_bench.peers.v2_run import run_v2_peers

    options = V2Options(
        peers=(peer,),
        concurrency=4,
        rounds=1,
        duration_s=1.0,
        warmup_s=0.5,
        prepass=False,  # the grid's first configuration; the choice is tested without servers
        checkpoint_dir=REPO_ROOT / "models",
        weights_dir=tmp_path / "weights",
        extra_env={"TORCHGATE_MODELS": "cnn"},  # no resnet101: a minute is the budget
        load_tool="wrk",
        ready_timeout_s=120,
    )
    result = run_v2_peers(options)
    keys = [series.key for series in result.measurements.series]
    assert keys == [
        "cnn v2 REST torchgate",
        "cnn v1 raw PNG torchgate",
        f"cnn v2 REST {peer}",
        "cnn gRPC torchgate",
        f"cnn gRPC {peer}",
    ]
    assert set(result.answers) == set(keys)
    assert all(found["match"] for found in result.answers.values())
    assert len({found["top1"] for found in result.answers.values()}) == 1
    for key in keys:
        (measured,) = result.measurements.results[key]
        assert measured.requests > 0 and measured.errors == 0, (key, measured)
    assert result.tools == {"v2": "wrk", "grpc": "h2load"}
    assert result.versions[f"{'nvidia-pytriton' if peer == 'triton' else 'kserve'}"]

    document = check_document(ResultsRun(tmp_path).document(v2_peers_record(result)), KIND)
    ratios = document["ratios"]
    assert set(ratios) == {
        f"cnn v2 REST: torchgate / {peer}",
        f"cnn gRPC: torchgate / {peer}",
        "cnn: torchgate v2 REST / torchgate v1 raw PNG",
    }
    assert all(value is not None and value > 0 for value in ratios.values())
    assert [row[2] for row in document["rows"]] == [
        "torchgate",
        "torchgate",
        peer,
        "torchgate",
        peer,
    ]
