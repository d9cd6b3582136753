"""``serve --workers 3``: a precision promoted through one worker is applied by all three
(the job's answer lists each, converged), every worker then serves it, and the inference
counter carries it as its ``precision`` label."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.helpers.apps import ADMIN_TOKEN, admin_headers
from tests.helpers.servers import serve_process
from tests.helpers.workers import fresh_client, wait_for_all_workers

pytestmark = pytest.mark.integration
WORKERS = 3
_COUNTER = re.compile(r'torchgate_inferences_total\{model="cnn",precision="(\w+)"\} (\S+)')


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("precision-workers")
    env = {
        "TORCHGATE_MODELS": "cnn",
        "TORCHGATE_WORKERS": str(WORKERS),
        "TORCHGATE_STATE_URL": f"sqlite:///{folder}/state.sqlite3",
        "TORCHGATE_ADMIN_TOKEN": ADMIN_TOKEN,
        "TORCHGATE_DEVICE": "cpu",
        "TORCHGATE_TORCH_THREADS": "1",
        "TORCHGATE_HEARTBEAT_S": "0.3",
        "TORCHGATE_PROCESS_TIMEOUT_S": "2",
        "TORCHGATE_ADMIN_WAIT_S": "20",
        "TORCHGATE_ACCESS_LOG": "false",
    }
    with serve_process(env, folder / "server.log") as (port, _):
        address = f"http://127.0.0.1:{port}"
        wait_for_all_workers(address, WORKERS)
        yield address


def _counts(client: httpx.Client) -> dict[str, float]:
    return {dtype: float(n) for dtype, n in _COUNTER.findall(client.get("/metrics").text)}


def _trial(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    started = client.post("/admin/models/cnn/precision", json=body, headers=admin_headers())
    assert started.status_code == 202, started.text
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = client.get(f"/admin/jobs/{started.json()['job_id']}", headers=admin_headers())
        if job.json()["status"] not in ("queued", "running"):
            assert job.json()["status"] == "succeeded", job.text
            return job.json()["result"]
        time.sleep(0.2)
    raise AssertionError("the precision trial did not finish in time")


def test_every_worker_serves_the_promoted_precision_and_counts_it(base: str) -> None:
    with fresh_client(base) as client:
        result = _trial(client, {"dtype": "bfloat16", "max_accuracy_drop": 0.005, "limit": 1000})
        assert result["promoted"] is True
        promotion = result["promotion"]
        assert promotion["converged"] is True
        processes = promotion["processes"]
        assert len({p["process_id"] for p in processes}) == WORKERS
        assert all(p["ok"] and p["version"] == promotion["parameters_version"] for p in processes)

        before = _counts(client)
        image = {"inputs": [[[[0.0] * 28] * 28]]}
        for _ in range(30):  # a fresh connection each: every worker answers some
            assert client.post("/v1/models/cnn/predict", json=image).status_code == 200
            info = client.get("/v1/models/cnn").json()
            assert info["dtype"] == "bfloat16"
            assert info["precision_accuracy"]["accuracy"] == result["candidate"]["accuracy"]
        after = _counts(client)
        assert after["bfloat16"] - before.get("bfloat16", 0.0) == 30
        assert after.get("float32", 0.0) == before.get("float32", 0.0)  # none served float32
