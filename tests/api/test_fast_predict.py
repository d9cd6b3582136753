"""The raw-body fast path answers exactly as the predict route does, and hands off the rest."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from PIL import Image

import app.api.fast_predict as fast_predict
from app.config import Settings
from tests.conftest import hang_up, running_app

pytestmark = pytest.mark.anyio

PREDICT = "/v1/models/cnn/predict"


def garment(shade: int = 90) -> bytes:
    image = Image.new("L", (28, 28), 0)
    for x in range(6, 22):
        for y in range(3, 26):
            image.putpixel((x, y), (shade + 3 * x + y) % 256)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
async def client(settings_factory: Callable[..., Settings]) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(settings_factory(models=("cnn", "gan"))) as client:
        yield client


@pytest.fixture
def taken(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the models whose requests the fast path took on (in front of the middleware
    stack, app/api/hot_path.py, or as the router's first route)."""
    calls: list[str] = []
    real = fast_predict.RawPredictRoute.answer

    async def spy(runtime, name, top_k, receive):  # type: ignore[no-untyped-def]
        calls.append(name)
        return await real(runtime, name, top_k, receive)

    monkeypatch.setattr(fast_predict.RawPredictRoute, "answer", staticmethod(spy))
    return calls


def _raw(data: bytes, media_type: str = "image/png") -> dict[str, object]:
    return {"content": data, "headers": {"content-type": media_type}}


async def test_raw_body_takes_the_fast_path_and_matches_multipart(client, taken) -> None:
    data = garment()
    fast = await client.post(f"{PREDICT}?top_k=3", **_raw(data))
    assert taken == ["cnn"]
    routed = await client.post(f"{PREDICT}?top_k=3", files=[("file", ("g.png", data, "image/png"))])
    assert taken == ["cnn"]  # multipart went through the route
    assert fast.status_code == routed.status_code == 200
    assert fast.json() == routed.json()
    assert len(fast.json()["predictions"][0]) == 3
    for header in ("x-model-version", "x-model-parameters-sha256", "x-request-id"):
        assert fast.headers[header]
    assert fast.headers["x-model-parameters-sha256"] == routed.headers["x-model-parameters-sha256"]
    assert fast.headers["content-type"] == "application/json"


async def test_octet_stream_and_default_top_k(client, taken) -> None:
    response = await client.post(PREDICT, **_raw(garment(), "application/octet-stream"))
    assert response.status_code == 200 and taken == ["cnn"]
    assert len(response.json()["predictions"][0]) == 5


@pytest.mark.parametrize(
    ("path", "media_type", "status"),
    [
        ("/v1/models/nope/predict", "image/png", 404),  # unknown model
        ("/v1/models/gan/predict", "image/png", 400),  # a generator
        (f"{PREDICT}?top_k=0", "image/png", 422),  # out of range for the query schema
        (f"{PREDICT}?top_k=11", "image/png", 422),  # more than the classes
        (f"{PREDICT}?top_k=abc", "image/png", 422),
        (f"{PREDICT}?top_k=2&debug=1", "image/png", 200),  # unknown parameters: the route's call
        (f"{PREDICT}/", "image/png", 307),  # the router's redirect
        (PREDICT, "text/plain", 415),
    ],
)
async def test_everything_else_is_answered_by_the_route(
    client, taken, path: str, media_type: str, status: int
) -> None:
    response = await client.post(path, **_raw(garment(), media_type))
    assert response.status_code == status, response.text
    assert taken == []
    if status >= 400:
        assert response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "words"),
    [(b"", "empty"), (b"not an image", "not an image"), (garment()[:60], "truncated")],
)
async def test_bad_bodies_get_the_routes_errors(client, taken, body: bytes, words: str) -> None:
    fast = await client.post(PREDICT, **_raw(body))
    routed = await client.post(PREDICT, files=[("file", ("g.png", body, "image/png"))])
    assert taken == ["cnn"]
    assert 400 <= fast.status_code < 500
    assert (fast.status_code, fast.json()) == (routed.status_code, routed.json())
    assert words in fast.json()["detail"]
    assert fast.headers["x-request-id"]
    assert (await client.post(PREDICT, **_raw(garment()))).status_code == 200  # still serving


async def test_streamed_body_over_the_limit_is_413(
    settings_factory: Callable[..., Settings],
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(8):
            yield b"x" * 1_000

    async with running_app(settings_factory(models=("cnn",), max_upload_bytes=4_000)) as client:
        response = await client.post(
            PREDICT, content=chunks(), headers={"content-type": "image/png"}
        )
        assert response.status_code == 413
        assert "4,000 bytes" in response.json()["detail"]


async def test_a_body_streamed_in_pieces_gets_the_same_answer(client, taken) -> None:
    data = garment()

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(data), 40):
            yield data[start : start + 40]

    streamed = await client.post(PREDICT, content=pieces(), headers={"content-type": "image/png"})
    whole = await client.post(PREDICT, **_raw(data))
    assert taken == ["cnn", "cnn"]
    assert streamed.status_code == 200 and streamed.json() == whole.json()


async def test_metrics_name_the_route_template(client, taken) -> None:
    for _ in range(3):
        assert (await client.post(PREDICT, **_raw(garment()))).status_code == 200
    metrics = (await client.get("/metrics")).text
    line = next(
        line
        for line in metrics.splitlines()
        if line.startswith("torchgate_http_requests_total")
        and 'route="/v1/models/{name}/predict"' in line
        and 'model="cnn"' in line
        and 'code="200"' in line
    )
    assert float(line.rsplit(" ", 1)[1]) == 3.0
    assert taken == ["cnn"] * 3


async def test_client_hanging_up_is_499(client) -> None:
    sent = await hang_up(client._transport.app, PREDICT, b"image/png")  # type: ignore[attr-defined]
    assert sent[0]["status"] == 499
