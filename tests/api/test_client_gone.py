"""A client that hangs up while its request waits: the request is cancelled, its work is
dropped (no forward runs for it), and it is counted as 499."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.apps import ADMIN_TOKEN
from tests.helpers.images import garment_png
from tests.helpers.metrics import metric_total
from tests.helpers.servers import serve_process

pytestmark = pytest.mark.integration  # a real server

BATCH_DELAY_S = 3.0  # a lone request waits this long for company: the window to hang up in


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {
        "TORCHGATE_MODELS": "cnn",
        "TORCHGATE_ADMIN_TOKEN": ADMIN_TOKEN,
        "TORCHGATE_MAX_BATCH_DELAY_MS": f"cnn={BATCH_DELAY_S * 1000:g}",
        "TORCHGATE_GRAPH": "eager",
    }
    log: Path = tmp_path_factory.mktemp("client-gone") / "server.log"
    with serve_process(env, log) as (port, _):
        yield f"http://127.0.0.1:{port}"


def test_work_for_a_client_that_hung_up_is_dropped(base_url: str) -> None:
    host, port = base_url.removeprefix("http://").split(":")
    image = garment_png()
    with socket.create_connection((host, int(port))) as sock:
        head = (
            f"POST /v1/models/cnn/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            f"Content-Length: {len(image)}\r\n\r\n"
        )
        sock.sendall(head.encode() + image)
        time.sleep(0.5)  # decoded and queued, waiting for its batch
    time.sleep(BATCH_DELAY_S + 1)  # past the batch's deadline
    metrics = httpx.get(f"{base_url}/metrics", timeout=10).text
    route = "/v1/models/{name}/predict"
    assert metric_total(metrics, "torchgate_http_requests", code="499", route=route) == 1
    batches = [
        sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "torchgate_batch_size_count" and sample.labels.get("model") == "cnn"
    ]
    assert sum(batches) == 0  # no forward ran for it
    served = httpx.post(
        f"{base_url}/v1/models/cnn/predict",
        content=image,
        headers={"content-type": "image/png"},
        timeout=30,
    )
    assert served.status_code == 200  # and the next client is served as usual
