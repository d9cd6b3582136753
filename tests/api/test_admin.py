"""Admin endpoints: token guard, reinitialize, reload, and atomicity under concurrent load."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.helpers.apps import admin_headers, app_settings, running_app
from tests.helpers.images import image_bytes

pytestmark = pytest.mark.anyio

REINIT = "/admin/models/alexnet/reinitialize"
RELOAD = "/admin/models/alexnet/reload"


@pytest.fixture(scope="module")
async def refusing_client(weights_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    """One alexnet app for the module's tests of refused requests, which leave the parameters
    as they found them (and check that they did)."""
    async with running_app(app_settings(weights_dir)) as client:
        yield client


async def _checksum(client) -> str:
    return (await client.get("/v1/models/alexnet")).json()["parameters_sha256"]


@pytest.mark.parametrize("path", [REINIT, RELOAD])
async def test_admin_needs_a_bearer_token(refusing_client, path: str) -> None:
    missing = await refusing_client.post(path)
    assert missing.status_code == 401
    assert "Bearer" in missing.json()["detail"]
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    wrong = await refusing_client.post(path, headers=admin_headers("nope"))
    assert wrong.status_code == 403
    basic = await refusing_client.post(path, headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert basic.status_code == 401


async def test_reinitialize_changes_the_checksum_reproducibly(alexnet_client) -> None:
    original = await _checksum(alexnet_client)
    first = await alexnet_client.post(
        REINIT,
        json={"scheme": "normal", "mean": 0, "std": 0.02, "seed": 42},
        headers=admin_headers(),
    )
    assert first.status_code == 200
    body = first.json()
    assert body["parameters_sha256"] != original
    assert body["training"] is False and body["device"] == "cpu" and body["seed"] == 42
    assert await _checksum(alexnet_client) == body["parameters_sha256"]
    again = await alexnet_client.post(
        REINIT, json={"scheme": "normal", "std": 0.02, "seed": 42}, headers=admin_headers()
    )
    assert again.json()["parameters_sha256"] == body["parameters_sha256"]
    assert again.json()["parameters_version"] == body["parameters_version"] + 1
    other = await alexnet_client.post(
        REINIT, json={"scheme": "kaiming_normal", "seed": 42}, headers=admin_headers()
    )
    assert other.json()["parameters_sha256"] != body["parameters_sha256"]
    info = (await alexnet_client.get("/v1/models/alexnet")).json()
    assert info["training"] is False and info["status"] == "ready"


async def test_reinitialized_model_still_serves_and_reports_its_version(alexnet_client) -> None:
    reinit = await alexnet_client.post(REINIT, json={"seed": 1}, headers=admin_headers())
    response = await alexnet_client.post(
        "/v1/models/alexnet/predict", files=[("file", ("a.jpg", image_bytes(), "image/jpeg"))]
    )
    assert response.status_code == 200
    assert response.json()["parameters_version"] == reinit.json()["parameters_version"]
    assert response.headers["X-Model-Parameters-SHA256"] == reinit.json()["parameters_sha256"]


async def test_reload_restores_the_original_weights(alexnet_client) -> None:
    original = await _checksum(alexnet_client)
    await alexnet_client.post(REINIT, json={"scheme": "uniform"}, headers=admin_headers())
    assert await _checksum(alexnet_client) != original
    reload = await alexnet_client.post(RELOAD, headers=admin_headers())
    assert reload.status_code == 200
    assert reload.json()["parameters_sha256"] == original
    assert await _checksum(alexnet_client) == original


@pytest.mark.parametrize(
    "body",
    [
        {"scheme": "zeros"},
        {"std": 0},
        {"std": -1},
        {"a": 1, "b": 0},
        {"seed": -1},
        {"scheme": "normal", "unknown": 1},
    ],
)
async def test_invalid_reinitialize_requests_are_422(refusing_client, body: dict) -> None:
    original = await _checksum(refusing_client)
    response = await refusing_client.post(REINIT, json=body, headers=admin_headers())
    assert response.status_code == 422
    assert isinstance(response.json()["detail"], str)
    assert await _checksum(refusing_client) == original


async def test_admin_on_unknown_model_is_404(refusing_client) -> None:
    response = await refusing_client.post("/admin/models/bert/reload", headers=admin_headers())
    assert response.status_code == 404


async def test_swaps_are_atomic_under_concurrent_predictions(alexnet_client) -> None:
    """Under churn, every prediction succeeds and equals what one whole parameter state gives."""
    data = image_bytes((256, 256))

    async def predict() -> tuple[str, list]:
        response = await alexnet_client.post(
            "/v1/models/alexnet/predict", files=[("file", ("a.jpg", data, "image/jpeg"))]
        )
        assert response.status_code == 200, response.text
        return response.headers["X-Model-Parameters-SHA256"], response.json()["predictions"]

    async def swap(seed: int | None) -> None:
        if seed is None:
            await alexnet_client.post(RELOAD, headers=admin_headers())
        else:
            await alexnet_client.post(REINIT, json={"seed": seed}, headers=admin_headers())

    plan = [0, None, 1, None, 2, None]
    expected = dict([await predict()])
    for step in plan:  # the answer each parameter state gives, measured without concurrency
        await swap(step)
        checksum, predictions = await predict()
        expected[checksum] = predictions

    async def churn() -> None:
        for step in plan:
            await swap(step)
            await asyncio.sleep(0.01)

    results = await asyncio.gather(*(predict() for _ in range(24)), churn())
    answers = [r for r in results if r is not None]
    assert len(answers) == 24
    for checksum, predictions in answers:
        assert checksum in expected
        reference = expected[checksum][0]
        assert [p["index"] for p in predictions[0]] == [p["index"] for p in reference]
        for got, want in zip(predictions[0], reference, strict=True):
            assert got["probability"] == pytest.approx(want["probability"], rel=1e-4)


async def test_imagenet_evaluation_on_an_image_folder(
    settings_factory, tmp_path, weights_dir
) -> None:
    """top-1/top-5 over an ImageFolder under the data dir equal a direct computation."""
    import torch
    import torchvision
    from PIL import Image
    from torchvision.models import AlexNet_Weights

    folder = tmp_path / "data" / "tiny-imagenet"
    for index in ("1", "404"):
        (folder / index).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (80 + 10 * i, 64), (40 * i, int(index) % 256, 90)).save(
                folder / index / f"{i}.png"
            )
    async with running_app(settings_factory(data_dir=tmp_path / "data")) as client:
        outside = await client.post(
            "/admin/models/alexnet/evaluate",
            json={"image_folder": "../"},
            headers=admin_headers(),
        )
        assert outside.status_code == 400
        missing = await client.post("/admin/models/alexnet/evaluate", headers=admin_headers())
        assert missing.status_code == 400 and "image_folder" in missing.json()["detail"]
        started = await client.post(
            "/admin/models/alexnet/evaluate",
            json={"image_folder": "tiny-imagenet"},
            headers=admin_headers(),
        )
        assert started.status_code == 202
        job_id = started.json()["job_id"]
        for _ in range(300):
            job = (await client.get(f"/admin/jobs/{job_id}", headers=admin_headers())).json()
            if job["status"] in ("succeeded", "failed"):
                break
            await asyncio.sleep(0.1)
        assert job["status"] == "succeeded", job["error"]
        accuracy = await client.get("/admin/models/alexnet/accuracy", headers=admin_headers())
    model = torchvision.models.alexnet()
    model.load_state_dict(torch.load(weights_dir / "alexnet-owt-7be5be79.pth"))
    model.eval()
    transform = AlexNet_Weights.DEFAULT.transforms()
    top1 = top5 = 0
    for index in ("1", "404"):
        for i in range(3):
            x = transform(Image.open(folder / index / f"{i}.png").convert("RGB")).unsqueeze(0)
            with torch.inference_mode():
                ranked = model(x)[0].topk(5).indices.tolist()
            top1 += ranked[0] == int(index)
            top5 += int(index) in ranked
    result = job["result"]
    assert result["n"] == 6 and job["progress"] == {"done": 6, "total": 6}
    assert result["accuracy"] == top1 / 6 and result["top5"] == top5 / 6
    assert result["dataset"] == "ImageFolder tiny-imagenet"
    recorded = accuracy.json()["recorded"]
    assert recorded["top1"] == pytest.approx(0.56522) and recorded["top5"] == pytest.approx(0.79066)


async def test_reload_from_a_corrupted_source_is_409_and_serving_continues(
    settings_factory, tmp_path, weights_dir
) -> None:
    import shutil

    shutil.copy(weights_dir / "alexnet-owt-7be5be79.pth", tmp_path / "alexnet-owt-7be5be79.pth")
    async with running_app(settings_factory(weights_dir=tmp_path)) as client:
        before = await _checksum(client)
        (tmp_path / "alexnet-owt-7be5be79.pth").write_bytes(b"truncated")
        reload = await client.post(RELOAD, headers=admin_headers())
        assert reload.status_code == 409
        assert "could not be reloaded" in reload.json()["detail"]
        assert await _checksum(client) == before
        ok = await client.post(
            "/v1/models/alexnet/predict", files=[("file", ("a.jpg", image_bytes(), "image/jpeg"))]
        )
        assert ok.status_code == 200


@pytest.mark.parametrize(
    "body", [{"scheme": "uniform", "a": -1e300, "b": 1e300}, {"scheme": "normal", "std": 1e9}]
)
async def test_extreme_reinitialize_values_are_refused(refusing_client, body: dict) -> None:
    before = await _checksum(refusing_client)
    response = await refusing_client.post(REINIT, json=body, headers=admin_headers())
    assert response.status_code == 422
    assert await _checksum(refusing_client) == before
