"""POST /v1/models/{name}/predict for the ImageNet classifiers, against a reference model."""

import base64
import io
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
import torch
import torchvision
from PIL import Image
from torchvision.models import AlexNet_Weights

from app.config import Settings
from tests.helpers.apps import app_settings, running_app
from tests.helpers.images import image_bytes, png_claiming

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
async def alexnet_client(weights_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    """One alexnet app for the whole module, in place of one per test: every test that uses it
    only predicts (a test that needs other settings starts its own)."""
    async with running_app(app_settings(weights_dir)) as client:
        yield client


@pytest.fixture(scope="module")
def reference(weights_dir: Path) -> torch.nn.Module:
    model = torchvision.models.alexnet()
    model.load_state_dict(torch.load(weights_dir / "alexnet-owt-7be5be79.pth"))
    return model.eval()


def _reference_top(reference: torch.nn.Module, data: bytes, k: int) -> list[tuple[int, float]]:
    transform = AlexNet_Weights.DEFAULT.transforms()
    x = transform(Image.open(io.BytesIO(data)).convert("RGB")).unsqueeze(0)
    with torch.inference_mode():
        probabilities = reference(x).softmax(1)[0]
    values, indices = probabilities.topk(k)
    return list(zip(indices.tolist(), values.tolist(), strict=True))


def _as_pairs(predictions: list[dict]) -> list[tuple[int, float]]:
    return [(p["index"], p["probability"]) for p in predictions]


def _assert_same(got: list[dict], expected: list[tuple[int, float]]) -> None:
    assert [i for i, _ in _as_pairs(got)] == [i for i, _ in expected]
    for (_, p), (_, q) in zip(_as_pairs(got), expected, strict=True):
        assert p == pytest.approx(q, rel=1e-4, abs=1e-6)


async def test_multipart_files_are_answered_in_order(alexnet_client, reference) -> None:
    first = image_bytes(color=(200, 30, 30))
    second = image_bytes((320, 240), color=(10, 120, 240), fmt="PNG")
    response = await alexnet_client.post(
        "/v1/models/alexnet/predict",
        files=[("file", ("a.jpg", first, "image/jpeg")), ("file", ("b.png", second, "image/png"))],
        params={"top_k": 3},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == "alexnet" and len(body["predictions"]) == 2
    _assert_same(body["predictions"][0], _reference_top(reference, first, 3))
    _assert_same(body["predictions"][1], _reference_top(reference, second, 3))
    labels = AlexNet_Weights.DEFAULT.meta["categories"]
    for prediction in body["predictions"][0]:
        assert prediction["label"] == labels[prediction["index"]]
    probabilities = [p["probability"] for p in body["predictions"][0]]
    assert probabilities == sorted(probabilities, reverse=True)
    assert response.headers["X-Model-Version"] == "1"
    assert len(response.headers["X-Model-Parameters-SHA256"]) == 64


async def test_base64_json_images_with_default_top_k(alexnet_client, reference) -> None:
    data = image_bytes(fmt="WEBP")
    response = await alexnet_client.post(
        "/v1/models/alexnet/predict", json={"images": [base64.b64encode(data).decode()]}
    )
    assert response.status_code == 200
    (predictions,) = response.json()["predictions"]
    _assert_same(predictions, _reference_top(reference, data, 5))


async def test_tensor_inputs_match_the_model(alexnet_client, reference) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 224, 224)
    response = await alexnet_client.post(
        "/v1/models/alexnet/predict", json={"inputs": x.tolist(), "top_k": 1000}
    )
    assert response.status_code == 200
    with torch.inference_mode():
        expected = reference(x).softmax(1)
    for row, predictions in zip(expected, response.json()["predictions"], strict=True):
        assert len(predictions) == 1000
        got = torch.tensor(
            [p["probability"] for p in sorted(predictions, key=lambda p: p["index"])]
        )
        assert torch.allclose(got, row, atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "status", "message"),
    [
        ({"content": b"", "headers": {"content-type": "application/json"}}, 400, "empty"),
        ({"content": b"hello", "headers": {"content-type": "text/plain"}}, 415, "Content-Type"),
        ({"json": {"inputs": [[1.0, 2.0]]}}, 422, "[N,3,H,W]"),
        ({"json": {"inputs": [[[[1.0] * 8] * 8] * 3]}}, 422, "between 64 and 1024"),
        ({"json": {"inputs": [[[[1e39] * 64] * 64] * 3]}}, 422, "NaN or infinite"),
        ({"json": {"inputs": [[[["x"] * 64] * 64] * 3]}}, 422, "only numbers"),
        ({"json": {"images": ["%%%"]}}, 400, "base64"),
        ({"json": {"images": [], "inputs": []}}, 400, "exactly one"),
        ({"json": {"picture": 1}}, 400, "unknown field"),
        ({"files": [("file", ("x.txt", b"just text", "text/plain"))]}, 415, "supported format"),
        ({"files": [("upload", ("x.jpg", b"abc", "image/jpeg"))]}, 400, "'file' part"),
        ({"files": [("file", ("e.jpg", b"", "image/jpeg"))]}, 422, "empty"),
        (
            {"files": [("file", ("t.png", image_bytes(fmt="PNG")[:400], "image/png"))]},
            422,
            "truncated",
        ),
        (
            {"files": [("file", ("b.png", png_claiming(100_000, 100_000), "image/png"))]},
            413,
            "pixels",
        ),
        ({"json": {"inputs": [[[[0.0] * 64] * 64] * 3], "top_k": 0}}, 422, "top_k"),
        ({"json": {"inputs": [[[[0.0] * 64] * 64] * 3], "top_k": 1001}}, 422, "top_k"),
        ({"json": {"inputs": [[[[0.0] * 64] * 64] * 3], "top_k": "five"}}, 422, "top_k"),
    ],
)
async def test_bad_inputs_get_a_clear_4xx_and_serving_continues(
    alexnet_client, kwargs: dict, status: int, message: str
) -> None:
    response = await alexnet_client.post("/v1/models/alexnet/predict", **kwargs)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]
    follow_up = await alexnet_client.post(
        "/v1/models/alexnet/predict", files=[("file", ("ok.jpg", image_bytes(), "image/jpeg"))]
    )
    assert follow_up.status_code == 200


async def test_top_k_query_out_of_range_is_422(alexnet_client) -> None:
    response = await alexnet_client.post(
        "/v1/models/alexnet/predict",
        params={"top_k": -3},
        files=[("file", ("ok.jpg", image_bytes(), "image/jpeg"))],
    )
    assert response.status_code == 422
    assert "top_k" in response.json()["detail"]


async def test_uploads_over_the_byte_limit_are_413(
    settings_factory: Callable[..., Settings],
) -> None:
    async with running_app(settings_factory(max_upload_bytes=50_000)) as client:
        big = image_bytes((1500, 1500), fmt="PNG")
        assert len(big) > 50_000
        response = await client.post(
            "/v1/models/alexnet/predict", files=[("file", ("big.png", big, "image/png"))]
        )
        assert response.status_code == 413
        assert "50,000 bytes" in response.json()["detail"]

        async def chunks():
            for _ in range(10):
                yield b"x" * 10_000

        streamed = await client.post(
            "/v1/models/alexnet/predict",
            content=chunks(),
            headers={"content-type": "application/json"},
        )
        assert streamed.status_code == 413
        ok = await client.post(
            "/v1/models/alexnet/predict", files=[("file", ("ok.jpg", image_bytes(), "image/jpeg"))]
        )
        assert ok.status_code == 200


async def test_too_many_images_in_one_request(settings_factory: Callable[..., Settings]) -> None:
    async with running_app(settings_factory(max_images_per_request=2)) as client:
        files = [("file", (f"{i}.jpg", image_bytes((64, 64)), "image/jpeg")) for i in range(3)]
        response = await client.post("/v1/models/alexnet/predict", files=files)
        assert response.status_code == 400
        assert response.json()["detail"]


async def test_unavailable_model_is_409_with_its_reason(
    settings_factory: Callable[..., Settings],
) -> None:
    async with running_app(settings_factory(models=("alexnet", "vgg16"))) as client:
        response = await client.post(
            "/v1/models/vgg16/predict", files=[("file", ("a.jpg", image_bytes(), "image/jpeg"))]
        )
        assert response.status_code == 409
        assert "vgg16-397923af.pth" in response.json()["detail"]
        assert (await client.post("/v1/models/nope/predict", json={})).status_code == 404


async def test_client_hanging_up_mid_upload_is_not_a_server_error(
    settings_factory: Callable[..., Settings],
) -> None:
    from asgi_lifespan import LifespanManager

    from app.main import create_app

    app = create_app(settings_factory())
    async with (
        LifespanManager(app) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://t"
        ) as client,
    ):
        from tests.helpers.apps import hang_up, wait_ready

        await wait_ready(client)
        sent = await hang_up(manager.app, "/v1/models/alexnet/predict", b"application/json")
        metrics = (await client.get("/metrics")).text
    assert sent[0]["status"] == 499
    assert 'code="499"' in metrics and 'code="500"' not in metrics


@pytest.mark.parametrize("content_type", ["image/png", "application/octet-stream"])
async def test_raw_image_body_is_one_image(alexnet_client, reference, content_type: str) -> None:
    data = image_bytes(fmt="PNG")
    response = await alexnet_client.post(
        "/v1/models/alexnet/predict?top_k=2", content=data, headers={"content-type": content_type}
    )
    assert response.status_code == 200, response.text
    (predictions,) = response.json()["predictions"]
    _assert_same(predictions, _reference_top(reference, data, 2))
    not_an_image = await alexnet_client.post(
        "/v1/models/alexnet/predict", content=b"text", headers={"content-type": "image/png"}
    )
    assert not_an_image.status_code == 415


async def test_declared_oversize_body_is_refused_before_reading(
    settings_factory: Callable[..., Settings],
) -> None:
    async with running_app(settings_factory(max_upload_bytes=1_000)) as client:
        v1 = await client.post(
            "/v1/models/alexnet/predict",
            content=b"x" * 5_000,
            headers={"content-type": "image/png"},
        )
        assert v1.status_code == 413 and "1,000 bytes" in v1.json()["detail"]
        v2 = await client.post("/v2/models/alexnet/infer", content=b"{" + b" " * 5_000 + b"}")
        assert v2.status_code == 413 and "1,000 bytes" in v2.json()["error"]


async def test_openapi_documents_every_predict_body(alexnet_client) -> None:
    schema = (await alexnet_client.get("/openapi.json")).json()
    content = schema["paths"]["/v1/models/{name}/predict"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json", "image/*"} <= set(content)
    assert "inputs" in content["application/json"]["schema"]["properties"]


async def test_tensor_and_nesting_limits_are_settings(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(max_tensor_elements=10_000, max_json_depth=8)
    async with running_app(settings) as client:
        big = await client.post(
            "/v1/models/alexnet/predict", json={"inputs": [[[[0.0] * 64] * 64] * 3]}
        )
        assert big.status_code == 413 and "12,288 elements" in big.json()["detail"]
        deep = await client.post(
            "/v1/models/alexnet/predict",
            content=b'{"inputs": ' + b"[" * 9 + b"0" + b"]" * 9 + b"}",
            headers={"content-type": "application/json"},
        )
        assert deep.status_code == 400 and "deeper than 8" in deep.json()["detail"]
        v2 = await client.post(
            "/v2/models/alexnet/infer",
            json={
                "inputs": [
                    {
                        "name": "input",
                        "shape": [1, 3, 64, 64],
                        "datatype": "FP32",
                        "data": [0.0] * 12_288,
                    }
                ]
            },
        )
        assert v2.status_code == 413 and "12,288 elements" in v2.json()["error"]
        v2_deep = await client.post(
            "/v2/models/alexnet/infer",
            content=b'{"inputs": [{"name": "input", "parameters": ' + b"[" * 9 + b"]" * 9 + b"}]}",
            headers={"content-type": "application/json"},
        )
        assert v2_deep.status_code == 400 and "deeper than 8" in v2_deep.json()["error"]
