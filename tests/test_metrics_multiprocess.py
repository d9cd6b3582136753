"""/metrics under several worker processes: every scrape, whichever worker answers, counts all."""

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from app.metrics import MODEL_STATUSES, Metrics
from app.metrics_multiprocess import MULTIPROC_DIR_VARIABLE, multiprocess_metrics
from app.serving.registry import ModelStatus
from tests.helpers.apps import ADMIN_TOKEN, admin_headers
from tests.helpers.images import image_bytes
from tests.helpers.repo import REPO_ROOT
from tests.helpers.servers import serve_process

PREDICT_ROUTE = "/v1/models/{name}/predict"


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def _predictions_counted(samples: dict) -> float | None:
    return _value(
        samples,
        "torchgate_http_requests_total",
        model="cnn",
        route=PREDICT_ROUTE,
        method="POST",
        code="200",
    )


def _ready_workers(samples: dict) -> float | None:
    return _value(samples, "torchgate_model_status", model="cnn", status="ready")


def test_the_workers_share_a_fresh_directory_removed_on_exit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(MULTIPROC_DIR_VARIABLE, raising=False)
    with multiprocess_metrics(3) as directory:
        assert directory is not None and directory.is_dir()
        assert list(directory.iterdir()) == []
        assert os.environ[MULTIPROC_DIR_VARIABLE] == str(directory)
        (directory / "counter_1.db").write_bytes(b"")
    assert not directory.exists()
    assert MULTIPROC_DIR_VARIABLE not in os.environ


def test_one_worker_or_a_directory_of_the_users_is_left_alone(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(MULTIPROC_DIR_VARIABLE, raising=False)
    with multiprocess_metrics(1) as directory:
        assert directory is None and MULTIPROC_DIR_VARIABLE not in os.environ
    monkeypatch.setenv(MULTIPROC_DIR_VARIABLE, str(tmp_path))
    with multiprocess_metrics(3) as directory:
        assert directory is None and os.environ[MULTIPROC_DIR_VARIABLE] == str(tmp_path)
    assert os.environ[MULTIPROC_DIR_VARIABLE] == str(tmp_path) and tmp_path.is_dir()


def test_the_status_names_are_the_registrys() -> None:
    assert tuple(status.value for status in ModelStatus) == MODEL_STATUSES


def test_one_process_reports_its_own_gauges_as_before() -> None:
    metrics = Metrics()
    assert not metrics.multiprocess  # the test process never sets PROMETHEUS_MULTIPROC_DIR
    metrics.watch_queue_depth("cnn", lambda: 7)
    metrics.sample_gauges({"cnn": 2}, {"cnn": "ready", "gan": "loading"})
    metrics.requests.labels("cnn", PREDICT_ROUTE, "POST", "200").inc()
    metrics.close()  # nothing to do for one process
    families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    assert families["torchgate_model_status"].type == "gauge"
    assert [(s.labels, s.value) for s in families["torchgate_model_status"].samples] == [
        ({"model": model, "status": status}, float(status == current))
        for model, current in (("cnn", "ready"), ("gan", "loading"))
        for status in MODEL_STATUSES
    ]
    # The depth is read at scrape time, as before; the sampled value is for several processes.
    assert [s.value for s in families["torchgate_queue_depth"].samples] == [7.0]
    assert _predictions_counted(_samples(metrics.render().decode())) == 1.0


_WORKER = """
import sys
from app.metrics import Metrics
metrics = Metrics()
assert metrics.multiprocess
metrics.requests.labels("cnn", "/v1/models/{name}/predict", "POST", "200").inc(5)
metrics.sample_gauges({"cnn": 1}, {"cnn": "ready"})
if sys.argv[1] == "stop":
    metrics.close()
"""


@pytest.mark.integration
def test_a_stopped_workers_counts_stay_and_its_gauges_leave(tmp_path: Path) -> None:
    env = {**os.environ, MULTIPROC_DIR_VARIABLE: str(tmp_path)}
    for how in ("stop", "run"):
        subprocess.run([sys.executable, "-c", _WORKER, how], cwd=REPO_ROOT, env=env, check=True)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))
    samples = _samples(generate_latest(registry).decode())
    assert _predictions_counted(samples) == 10
    assert _ready_workers(samples) == 1
    assert _value(samples, "torchgate_queue_depth", model="cnn") == 1


def _scrape(base: str) -> dict:
    """One scrape on a connection of its own, so that any worker may answer it."""
    response = httpx.get(f"{base}/metrics", timeout=30)
    assert response.status_code == 200
    return _samples(response.text)


def _wait_for(check, timeout: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _processes_applying_a_reload(base: str) -> int:
    answer = httpx.post(f"{base}/admin/models/cnn/reload", headers=admin_headers(), timeout=30)
    return len(answer.json()["processes"]) if answer.status_code == 200 else 0


@pytest.mark.integration
def test_every_scrape_counts_the_requests_of_all_workers(tmp_path: Path) -> None:
    temp = tmp_path / "temp"  # where the server makes its samples directory
    temp.mkdir()
    env = {
        "TMPDIR": str(temp),
        "TORCHGATE_MODELS": "cnn",
        "TORCHGATE_ADMIN_TOKEN": ADMIN_TOKEN,
        "TORCHGATE_WORKERS": "3",
        "TORCHGATE_DEVICE": "cpu",
        "TORCHGATE_TORCH_THREADS": "1",
    }
    with serve_process(env, tmp_path / "server.log") as (port, _process):
        base = f"http://127.0.0.1:{port}"
        # Each worker reports its model's status when it answers a scrape: three ready ones
        # (summed over the live processes) means every worker has loaded and answered; a
        # change that lists three processes means every one has caught up and serves.
        _wait_for(lambda: _ready_workers(_scrape(base)) == 3)
        _wait_for(lambda: _processes_applying_a_reload(base) == 3, timeout=60)
        body = image_bytes((28, 28), fmt="PNG", mode="L")
        no_keepalive = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(base_url=base, timeout=30, limits=no_keepalive) as client:
            for _ in range(60):
                response = client.post(
                    "/v1/models/cnn/predict", content=body, headers={"content-type": "image/png"}
                )
                assert response.status_code == 200
        # A worker counts a request just after sending its response: wait for the last one.
        _wait_for(lambda: _predictions_counted(_scrape(base)) == 60, timeout=10)
        for _ in range(12):
            samples = _scrape(base)
            assert _predictions_counted(samples) == 60
            assert _ready_workers(samples) == 3
        # (torch may put other things in TMPDIR too, e.g. a loaded AOTInductor package)
        [directory] = temp.glob("torchgate-metrics-*")
        assert len(list(directory.glob("counter_*.db"))) == 3  # one file per worker process
    assert list(temp.glob("torchgate-metrics-*")) == []  # removed when the server stopped
