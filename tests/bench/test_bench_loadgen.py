import asyncio

import pytest

from tests.helpers.toy_servers import ToyServer
from torchgate_bench.load import LoadPlan, LoadTarget
from torchgate_bench.loadgen import drive, generator_processes, run_loadgen
from torchgate_bench.server import free_port


@pytest.mark.integration
def test_subprocess_generator_counts_every_answer(toy_server: ToyServer) -> None:
    plan = LoadPlan(concurrency=4, duration_s=1.0)
    result = run_loadgen(LoadTarget(f"{toy_server.base_url}/ok"), plan)
    assert result.tool == "httpx"
    assert result.errors == 0
    assert result.requests > 0
    # requests still in flight when the window closes were answered but are not counted
    served = toy_server.counts["ok"]
    assert served - plan.concurrency <= result.requests <= served
    assert result.latency.p50_ms <= result.latency.p99_ms


@pytest.mark.integration
def test_non_2xx_answers_are_errors(toy_server: ToyServer) -> None:
    plan = LoadPlan(concurrency=2, duration_s=0.5, warmup_s=0.2)
    result = asyncio.run(
        drive(LoadTarget(f"{toy_server.base_url}/fail", images_per_request=1), plan)
    )
    assert result.requests > 0
    assert result.errors == result.requests
    assert result.error_kinds == {"status": result.requests}
    assert result.images_per_s == 0
    assert toy_server.counts["fail"] > result.requests  # the warm-up was sent but not counted


def test_refused_connections_are_transport_errors() -> None:
    plan = LoadPlan(concurrency=1, duration_s=0.3)
    result = asyncio.run(drive(LoadTarget(f"http://127.0.0.1:{free_port()}/"), plan))
    assert result.requests > 0
    assert result.errors == result.requests
    assert set(result.error_kinds or {}) == {"transport"}


@pytest.mark.integration
def test_processes_share_the_connections_and_their_counts_add_up(toy_server: ToyServer) -> None:
    plan = LoadPlan(concurrency=5, duration_s=1.0)
    result = run_loadgen(LoadTarget(f"{toy_server.base_url}/ok"), plan, processes=2)
    assert result.errors == 0 and result.duration_s == 1.0
    served = toy_server.counts["ok"]
    assert served - plan.concurrency <= result.requests <= served


def test_a_big_host_gets_several_generator_processes() -> None:
    assert generator_processes(64, cores=16) == 4
    assert generator_processes(64, cores=2) == 1
    assert generator_processes(8, cores=16) == 1
