"""The hot path in front of the middleware stack answers as the stack would: same bodies,
headers, errors and metrics; it declines what it does not take, unread."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi.telemetry._asgi import NativeTelemetry

import app.api.fast_predict as fast_predict
import app.api.hot_path as hot_path
from app.config import Settings
from app.serving.runtime import ModelRuntime
from tests.api.test_fast_predict import PREDICT, _raw, garment
from tests.conftest import hang_up, running_app

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(settings_factory: Callable[..., Settings]) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(settings_factory(models=("cnn",), max_upload_bytes=4_000)) as client:
        yield client


@pytest.fixture
def routed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the models whose raw-body predicts went through the middleware stack (and the
    router's fast route) instead of the hot path."""
    calls: list[str] = []
    real = fast_predict.RawPredictRoute.handle

    async def spy(self, scope, receive, send):  # type: ignore[no-untyped-def]
        calls.append(scope["path_params"]["name"])
        await real(self, scope, receive, send)

    monkeypatch.setattr(fast_predict.RawPredictRoute, "handle", spy)
    return calls


def _count(metrics: str, code: str) -> float:
    for line in metrics.splitlines():
        if (
            line.startswith("torchgate_http_requests_total")
            and 'route="/v1/models/{name}/predict"' in line
            and 'model="cnn"' in line
            and f'code="{code}"' in line
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_a_raw_predict_skips_the_stack_and_answers_the_same(client, routed) -> None:
    data = garment()
    hot = await client.post(f"{PREDICT}?top_k=3", **_raw(data))
    assert routed == []
    stacked = await client.post(
        f"{PREDICT}?top_k=3", files=[("file", ("g.png", data, "image/png"))]
    )
    assert hot.status_code == stacked.status_code == 200
    assert hot.json() == stacked.json()
    for header in ("content-type", "x-model-version", "x-model-parameters-sha256"):
        assert hot.headers[header] == stacked.headers[header]
    assert len(hot.headers["x-request-id"]) == 32  # a fresh id, as the middleware makes


async def test_the_clients_request_id_is_echoed_and_a_bad_one_replaced(client) -> None:
    response = await client.post(
        PREDICT,
        content=garment(),
        headers={"content-type": "image/png", "x-request-id": "trace-42"},
    )
    assert response.headers.get_list("x-request-id") == ["trace-42"]
    response = await client.post(
        PREDICT, content=garment(), headers={"content-type": "image/png", "x-request-id": "bad id"}
    )
    assert response.headers["x-request-id"] != "bad id"


async def test_errors_come_from_the_apps_handlers_and_are_counted(client, routed) -> None:
    before = (await client.get("/metrics")).text
    bad = await client.post(PREDICT, **_raw(b"not an image"))
    assert bad.status_code == 415 and "not an image" in bad.json()["detail"]
    assert bad.headers["x-request-id"] and routed == []
    ok = await client.post(PREDICT, **_raw(garment()))
    after = (await client.get("/metrics")).text
    assert ok.status_code == 200
    assert _count(after, "415") - _count(before, "415") == 1
    assert _count(after, "200") - _count(before, "200") == 1


async def test_an_unexpected_error_is_a_logged_500_and_the_server_keeps_serving(
    client, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = ModelRuntime.decode_images

    async def broken(self, bodies):  # type: ignore[no-untyped-def]
        raise KeyError("a bug")

    monkeypatch.setattr(ModelRuntime, "decode_images", broken)
    response = await client.post(
        PREDICT, content=garment(), headers={"content-type": "image/png", "x-request-id": "r-1"}
    )
    assert response.status_code == 500
    assert response.json() == {"detail": "internal server error"}
    assert response.headers.get_list("x-request-id") == ["r-1"]  # once, not twice
    monkeypatch.setattr(ModelRuntime, "decode_images", real)
    assert (await client.post(PREDICT, **_raw(garment()))).status_code == 200


async def test_an_oversized_or_undeclared_body_goes_through_the_stack(client, routed) -> None:
    too_big = await client.post(PREDICT, **_raw(b"x" * 5_000))
    assert too_big.status_code == 413 and "4,000 bytes" in too_big.json()["detail"]
    assert routed == []  # refused by the stack's body limit, before any route

    async def pieces() -> AsyncIterator[bytes]:
        yield garment()

    chunked = await client.post(PREDICT, content=pieces(), headers={"content-type": "image/png"})
    assert chunked.status_code == 200 and routed == ["cnn"]


async def test_a_client_gone_before_its_body_is_499(client) -> None:
    app = client._transport.app  # type: ignore[attr-defined]
    sent = await hang_up(app, PREDICT, b"image/png", ((b"content-length", b"100"),))
    assert sent[0]["status"] == 499


async def test_with_opentelemetry_on_every_request_goes_through_the_stack(
    client, routed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FastAPI's native telemetry traces requests in its own __call__: the hot path steps
    aside so every request keeps its span."""
    monkeypatch.setattr(hot_path, "_TELEMETRY_CHECK_S", 0.0)
    with pytest.MonkeyPatch.context() as patch:  # as if an OpenTelemetry SDK were configured
        patch.setattr(NativeTelemetry, "enabled", lambda self: True)
        response = await client.post(PREDICT, **_raw(garment()))
    assert response.status_code == 200 and routed == ["cnn"]
    assert (await client.post(PREDICT, **_raw(garment()))).status_code == 200
    assert routed == ["cnn"]  # the hot path again
