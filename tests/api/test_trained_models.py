"""The Fashion-MNIST cnn, lstm and gan behind the API, with the committed checkpoints."""

import asyncio
import base64
import io
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from app import datasets
from app.config import Settings
from app.evaluation import evaluate_classifier
from app.training.artifacts import load_net
from tests.helpers.apps import admin_headers, app_settings, running_app
from tests.helpers.repo import REPO_ROOT

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def fashion_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir holding only the shipped test split, as on a fresh machine."""
    directory = tmp_path_factory.mktemp("data")
    shutil.copytree(REPO_ROOT / "data" / "fashion-mnist", directory / "fashion-mnist")
    return directory


@pytest.fixture(scope="module")
def test_split(fashion_data_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    return datasets.load_tensors("fashion-mnist", "test", fashion_data_dir)


@pytest.fixture(scope="module")
async def client(weights_dir: Path, fashion_data_dir: Path) -> AsyncIterator:
    """One app for the module's tests that leave the parameters as they found them."""
    settings = app_settings(weights_dir, models=("cnn", "lstm", "gan"), data_dir=fashion_data_dir)
    async with running_app(settings) as client:
        yield client


@pytest.fixture
async def fresh_client(
    settings_factory: Callable[..., Settings], fashion_data_dir: Path
) -> AsyncIterator:
    """An app of its own, for a test that changes the parameters."""
    settings = settings_factory(models=("cnn", "lstm", "gan"), data_dir=fashion_data_dir)
    async with running_app(settings) as client:
        yield client


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


async def _run_job(client, name: str, body: dict | None = None) -> dict:
    started = await client.post(
        f"/admin/models/{name}/evaluate", json=body, headers=admin_headers()
    )
    assert started.status_code == 202, started.text
    job_id = started.json()["job_id"]
    for _ in range(600):
        job = (await client.get(f"/admin/jobs/{job_id}", headers=admin_headers())).json()
        if job["status"] in ("succeeded", "failed"):
            return job
        await asyncio.sleep(0.1)
    raise AssertionError("evaluation did not finish")


async def test_trained_models_are_ready_with_verified_checkpoints(client) -> None:
    models = {m["name"]: m for m in (await client.get("/v1/models")).json()["models"]}
    for name in ("cnn", "lstm", "gan"):
        assert models[name]["status"] == "ready", models[name]["reason"]
        assert models[name]["training"] is False
        assert models[name]["labels"] == 10
        assert models[name]["weights_source"].endswith(".pt")
    assert models["cnn"]["parameter_count"] < 1_000_000


@pytest.mark.parametrize("name", ["cnn", "lstm"])
async def test_image_uploads_are_classified_like_the_checkpoint(
    client, test_split, fashion_data_dir: Path, name: str
) -> None:
    raw = datasets.load_split("fashion-mnist", "test", fashion_data_dir)
    pixels = [raw.data[i].numpy() for i in range(4)]
    response = await client.post(
        f"/v1/models/{name}/predict",
        files=[("file", (f"{i}.png", _png(p), "image/png")) for i, p in enumerate(pixels)],
        params={"top_k": 10},
    )
    assert response.status_code == 200, response.text
    net, _ = load_net(REPO_ROOT / "models" / f"{name}.json")
    images = test_split[0][:4]
    with torch.inference_mode():
        expected = net(images.squeeze(1) if name == "lstm" else images).softmax(1)
    for row, predictions in zip(expected, response.json()["predictions"], strict=True):
        got = sorted(predictions, key=lambda p: p["index"])
        assert torch.allclose(torch.tensor([p["probability"] for p in got]), row, atol=1e-5)
        assert predictions[0]["label"] == raw.classes[predictions[0]["index"]]


async def test_cnn_takes_json_tensors_and_base64(client, test_split) -> None:
    images, labels = test_split
    tensor = await client.post(
        "/v1/models/cnn/predict", json={"inputs": images[:8].tolist(), "top_k": 1}
    )
    assert tensor.status_code == 200
    top = [p[0]["index"] for p in tensor.json()["predictions"]]
    assert sum(int(t == y) for t, y in zip(top, labels[:8].tolist(), strict=True)) >= 6
    rgb = np.stack([np.full((40, 30), 0, np.uint8)] * 3, axis=-1)
    encoded = base64.b64encode(_png(rgb)).decode()
    colour = await client.post("/v1/models/cnn/predict", json={"images": [encoded]})
    assert colour.status_code == 200
    assert len(colour.json()["predictions"][0]) == 5


@pytest.mark.parametrize("rows", [1, 14, 28])
async def test_lstm_takes_raw_sequences_of_any_length(client, test_split, rows: int) -> None:
    sequence = test_split[0][0, 0, :rows].tolist()
    response = await client.post("/v1/models/lstm/predict", json={"inputs": [sequence]})
    assert response.status_code == 200, response.text
    probabilities = [p["probability"] for p in response.json()["predictions"][0]]
    assert probabilities == sorted(probabilities, reverse=True)


@pytest.mark.parametrize(
    ("name", "inputs", "message"),
    [
        ("lstm", [[[0.0] * 28] * 29], "T must be 1..28"),
        ("lstm", [[[0.0] * 27] * 5], "[N,T,28]"),
        ("cnn", [[[[0.0] * 28] * 28] * 2], "[N,1,28,28]"),
        ("cnn", [[[0.0] * 28] * 28], "[N,1,28,28]"),
    ],
)
async def test_wrong_tensor_shapes_are_422(client, name: str, inputs: list, message: str) -> None:
    response = await client.post(f"/v1/models/{name}/predict", json={"inputs": inputs})
    assert response.status_code == 422
    assert message in response.json()["detail"]


async def test_gan_png_grid_is_deterministic_per_seed(client) -> None:
    body = {"n": 10, "seed": 123, "format": "png"}
    first = await client.post("/v1/models/gan/generate", json=body)
    assert first.status_code == 200
    assert first.headers["content-type"] == "image/png"
    grid = Image.open(io.BytesIO(first.content))
    assert grid.size == (10 * 30 + 2, 30 + 2)
    again = await client.post("/v1/models/gan/generate", json=body)
    assert again.content == first.content
    other = await client.post("/v1/models/gan/generate", json={**body, "seed": 124})
    assert other.content != first.content


async def test_gan_json_images_are_the_requested_class(client) -> None:
    response = await client.post(
        "/v1/models/gan/generate", json={"n": 16, "label": 7, "seed": 5, "format": "json"}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["labels"] == [7] * 16 and body["seed"] == 5
    images = [Image.open(io.BytesIO(base64.b64decode(i))) for i in body["images"]]
    assert all(i.size == (28, 28) and i.mode == "L" for i in images)
    tensors = torch.stack([torch.from_numpy(np.asarray(i, np.float32)) for i in images])
    normalized = datasets.normalize(tensors.unsqueeze(1) / 255.0, "fashion-mnist")
    judge = await client.post(
        "/v1/models/cnn/predict", json={"inputs": normalized.tolist(), "top_k": 1}
    )
    predicted = [p[0]["index"] for p in judge.json()["predictions"]]
    assert predicted.count(7) >= 12  # sneakers, as asked


async def test_gan_without_seed_reports_the_seed_it_used(client) -> None:
    first = await client.post("/v1/models/gan/generate", json={"n": 2, "format": "json"})
    seed = first.json()["seed"]
    again = await client.post(
        "/v1/models/gan/generate", json={"n": 2, "format": "json", "seed": seed}
    )
    assert again.json()["images"] == first.json()["images"]


@pytest.mark.parametrize(
    "body",
    [
        {"n": 0},
        {"n": 65},
        {"label": 10},
        {"label": -1},
        {"format": "gif"},
        {"seed": -5},
        {"n": "many"},
        {"z": [1]},
    ],
)
async def test_bad_generate_requests_are_422(client, body: dict) -> None:
    response = await client.post("/v1/models/gan/generate", json=body)
    assert response.status_code == 422
    assert isinstance(response.json()["detail"], str)


async def test_predict_on_gan_and_generate_on_cnn_are_refused(client) -> None:
    assert (
        await client.post("/v1/models/gan/predict", json={"inputs": [[0.0]]})
    ).status_code == 400
    assert (await client.post("/v1/models/cnn/generate", json={"n": 1})).status_code == 400


async def test_cnn_evaluation_equals_an_independent_evaluation(client, test_split) -> None:
    job = await _run_job(client, "cnn")
    assert job["status"] == "succeeded", job["error"]
    assert job["progress"] == {"done": 10_000, "total": 10_000}
    result = job["result"]
    net, manifest = load_net(REPO_ROOT / "models" / "cnn.json")
    independent = evaluate_classifier(net, *test_split, num_classes=10)
    assert result["n"] == 10_000
    assert result["accuracy"] == independent["accuracy"] == manifest["test_accuracy"]
    assert result["loss"] == pytest.approx(independent["loss"], rel=1e-5)
    assert result["confusion_matrix"] == independent["confusion_matrix"]
    assert len(result["per_class_accuracy"]) == 10
    assert result["accuracy"] >= 0.935
    accuracy = (await client.get("/admin/models/cnn/accuracy", headers=admin_headers())).json()
    assert accuracy["latest"]["accuracy"] == result["accuracy"]
    assert accuracy["recorded"]["test_accuracy"] == manifest["test_accuracy"]


async def test_reinitialize_drops_accuracy_to_chance_and_reload_restores_it(fresh_client) -> None:
    await fresh_client.post(
        "/admin/models/lstm/reinitialize", json={"seed": 0}, headers=admin_headers()
    )
    chance = await _run_job(fresh_client, "lstm")
    assert chance["result"]["accuracy"] < 0.2
    await fresh_client.post("/admin/models/lstm/reload", headers=admin_headers())
    restored = await _run_job(fresh_client, "lstm")
    assert restored["result"]["accuracy"] >= 0.90


async def test_gan_evaluation_is_judged_by_the_cnn(client) -> None:
    job = await _run_job(client, "gan")
    assert job["status"] == "succeeded", job["error"]
    assert job["result"]["consistency"] >= 0.85
    assert job["result"]["all_classes_produced"] is True
    assert len(job["result"]["per_class"]) == 10


async def test_evaluation_endpoints_need_the_token_and_a_known_job(client) -> None:
    assert (await client.post("/admin/models/cnn/evaluate")).status_code == 401
    missing = await client.get("/admin/jobs/nope", headers=admin_headers())
    assert missing.status_code == 404
    assert (await client.get("/admin/models/cnn/accuracy")).status_code == 401


async def test_corrupt_or_missing_checkpoints_are_unavailable_and_the_rest_serve(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    checkpoints = tmp_path / "models"
    shutil.copytree(REPO_ROOT / "models", checkpoints)
    (checkpoints / "cnn.pt").write_bytes(b"not the trained weights")
    (checkpoints / "gan.pt").unlink()
    settings = settings_factory(models=("cnn", "lstm", "gan"), checkpoint_dir=checkpoints)
    async with running_app(settings) as client:
        models = {m["name"]: m for m in (await client.get("/v1/models")).json()["models"]}
        assert models["cnn"]["status"] == "unavailable"
        assert "corrupt" in models["cnn"]["reason"] and "cnn.pt" in models["cnn"]["reason"]
        assert models["gan"]["status"] == "unavailable" and "missing" in models["gan"]["reason"]
        assert models["lstm"]["status"] == "ready"
        refused = await client.post(
            "/v1/models/cnn/predict", json={"inputs": [[[[0.0] * 28] * 28]]}
        )
        assert refused.status_code == 409 and "corrupt" in refused.json()["detail"]
        served = await client.post("/v1/models/lstm/predict", json={"inputs": [[[0.0] * 28] * 3]})
        assert served.status_code == 200
