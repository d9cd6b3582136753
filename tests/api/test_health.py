import threading
from collections.abc import Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.config import Settings
from app.serving import registry as registry_module
from tests.helpers.apps import running_app, wait_ready

pytestmark = pytest.mark.anyio


async def test_liveness_answers_while_models_load_and_readiness_waits(
    settings_factory: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    real_load = registry_module.load_model

    def slow_load(*args, **kwargs):  # type: ignore[no-untyped-def]
        release.wait(30)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(registry_module, "load_model", slow_load)
    async with running_app(settings_factory(), ready=False) as client:
        live = await client.get("/healthz")
        assert live.status_code == 200
        assert live.json()["status"] == "ok"
        loading = await client.get("/readyz")
        assert loading.status_code == 503
        assert loading.json() == {"status": "loading", "models": {"alexnet": "loading"}}
        busy = await client.post("/v1/models/alexnet/predict", json={"inputs": [[[[0.0]]]]})
        assert busy.status_code == 409
        assert "loading" in busy.json()["detail"]
        release.set()
        await wait_ready(client)
        ready = await client.get("/readyz")
        assert ready.json() == {"status": "ready", "models": {"alexnet": "ready"}}


async def test_readiness_counts_unavailable_models_as_finished(
    settings_factory: Callable[..., Settings],
) -> None:
    async with running_app(settings_factory(models=("alexnet", "vgg16"))) as client:
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["models"] == {"alexnet": "ready", "vgg16": "unavailable"}


async def test_metrics_are_prometheus_text_and_count_requests(alexnet_client) -> None:
    await alexnet_client.get("/v1/models/alexnet")
    response = await alexnet_client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    requests = families["torchgate_http_requests"]
    assert any(
        s.labels
        == {"model": "alexnet", "route": "/v1/models/{name}", "method": "GET", "code": "200"}
        and s.value >= 1
        for s in requests.samples
    )
    status = families["torchgate_model_status"]
    assert any(
        s.labels == {"model": "alexnet", "status": "ready"} and s.value == 1 for s in status.samples
    )
