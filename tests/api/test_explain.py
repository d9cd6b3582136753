"""POST /v1/models/{name}/explain: predict's inputs in, attributions (JSON) or a heatmap (PNG)
out, and a clear 4xx for everything a client can get wrong."""

from __future__ import annotations

import asyncio
import base64
import io

import httpx
import numpy as np
import pytest
from PIL import Image

from app.config import Settings
from tests.helpers.apps import running_app
from tests.helpers.images import garment_png, image_bytes
from tests.helpers.weights import fashion_checkpoints

pytestmark = pytest.mark.anyio

CNN = "/v1/models/cnn/explain"
LSTM = "/v1/models/lstm/explain"


def _files(*pngs: bytes) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("file", (f"{i}.png", png, "image/png")) for i, png in enumerate(pngs)]


async def test_the_answer_has_the_prediction_attributions_delta_and_version(
    v2_client: httpx.AsyncClient,
) -> None:
    response = await v2_client.post(CNN, files=_files(garment_png()), params={"steps": 16})
    assert response.status_code == 200, response.text
    body = response.json()
    model = (await v2_client.get("/v1/models/cnn")).json()
    assert body["model"] == "cnn"
    assert body["parameters_version"] == model["parameters_version"]
    assert body["parameters_sha256"] == model["parameters_sha256"]
    assert response.headers["X-Model-Parameters-SHA256"] == model["parameters_sha256"]
    assert (body["method"], body["steps"], body["baseline"]) == (
        "integrated_gradients",
        16,
        "zeros",
    )
    (item,) = body["explanations"]
    values = np.array(item["attributions"], dtype=np.float32)
    assert item["shape"] == [1, 28, 28] and values.shape == (1, 28, 28)
    assert isinstance(item["convergence_delta"], float)
    # the class explained is the one predicted, and predict agrees on it
    predict = await v2_client.post("/v1/models/cnn/predict", files=_files(garment_png()))
    top = predict.json()["predictions"][0][0]
    assert item["target"] == top["index"] and item["label"] == top["label"]
    assert item["predictions"][0]["index"] == top["index"]
    assert item["predictions"][0]["probability"] == pytest.approx(top["probability"], abs=1e-5)
    assert len(item["predictions"]) == 5


async def test_every_way_of_sending_an_image_gets_the_same_explanation(
    v2_client: httpx.AsyncClient,
) -> None:
    png = garment_png(shade=40)
    params = {"method": "saliency"}
    answers = [
        await v2_client.post(CNN, files=_files(png), params=params),
        await v2_client.post(CNN, json={"images": [base64.b64encode(png).decode()]}, params=params),
        await v2_client.post(
            CNN, content=png, headers={"Content-Type": "image/png"}, params=params
        ),
    ]
    assert [a.status_code for a in answers] == [200, 200, 200]
    first = answers[0].json()["explanations"]
    assert all(a.json()["explanations"] == first for a in answers[1:])


async def test_tensors_are_explained_one_each_in_order(v2_client: httpx.AsyncClient) -> None:
    x = np.random.default_rng(0).normal(size=(2, 1, 28, 28)).astype(np.float32)
    response = await v2_client.post(
        CNN, json={"inputs": x.tolist()}, params={"method": "gradcam", "top_k": 2}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["method"] == "gradcam" and "steps" not in body
    assert [item["shape"] for item in body["explanations"]] == [[1, 28, 28]] * 2
    for item in body["explanations"]:
        values = np.array(item["attributions"])
        assert (values >= 0).all() and "convergence_delta" not in item
        assert len(item["predictions"]) == 2
    alone = await v2_client.post(CNN, json={"inputs": x[1:].tolist()}, params={"method": "gradcam"})
    np.testing.assert_allclose(
        alone.json()["explanations"][0]["attributions"],
        body["explanations"][1]["attributions"],
        atol=1e-6,
    )


async def test_the_lstm_is_explained_per_pixel_and_per_row(v2_client: httpx.AsyncClient) -> None:
    response = await v2_client.post(LSTM, files=_files(garment_png()), params={"steps": 32})
    assert response.status_code == 200, response.text
    (item,) = response.json()["explanations"]
    values = np.array(item["attributions"])
    assert values.shape == (28, 28)
    np.testing.assert_allclose(item["row_attributions"], values.sum(axis=1), atol=1e-5)
    sequence = np.random.default_rng(1).normal(size=(1, 14, 28)).astype(np.float32)
    short = await v2_client.post(LSTM, json={"inputs": sequence.tolist()})
    assert short.status_code == 200, short.text
    (item,) = short.json()["explanations"]
    assert item["shape"] == [14, 28] and len(item["row_attributions"]) == 14


async def test_imagenet_attributions_are_mapped_onto_the_uploaded_image(
    v2_client: httpx.AsyncClient,
) -> None:
    """alexnet (random weights): the 224 crop's attributions, back on a 300x200 photo."""
    photo = image_bytes((300, 200))
    response = await v2_client.post(
        "/v1/models/alexnet/explain",
        files=[("file", ("a.jpg", photo, "image/jpeg"))],
        params={"method": "gradcam"},
    )
    assert response.status_code == 200, response.text
    (item,) = response.json()["explanations"]
    assert item["shape"] == [3, 200, 300]  # channels, height, width of the photo
    values = np.array(item["attributions"])
    assert values.shape == (3, 200, 300) and (values >= 0).all()
    # outside the centre crop (the model never saw it) there is nothing to attribute
    assert values[:, :, :10].max() == 0.0 and values[:, :, -10:].max() == 0.0


async def test_format_png_draws_the_heatmap_over_the_input(v2_client: httpx.AsyncClient) -> None:
    response = await v2_client.post(
        CNN, files=_files(garment_png()), params={"format": "png", "steps": 8}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    picture = Image.open(io.BytesIO(response.content))
    assert picture.mode == "RGB" and picture.size == (224, 224)
    assert response.headers["X-Explanation-Method"] == "integrated_gradients"
    target = int(response.headers["X-Explanation-Target"])
    assert 0 <= target < 10 and response.headers["X-Explanation-Label"]
    float(response.headers["X-Explanation-Convergence-Delta"])
    photo = await v2_client.post(
        "/v1/models/alexnet/explain?format=png&method=saliency",
        content=image_bytes((300, 200)),
        headers={"Content-Type": "image/jpeg"},
    )
    assert photo.status_code == 200, photo.text
    # the photo's own frame, enlarged whole times until its shorter side reaches 224
    assert Image.open(io.BytesIO(photo.content)).size == (600, 400)


@pytest.mark.parametrize(
    ("path", "params", "status", "message"),
    [
        ("/v1/models/gan/explain", {}, 400, "is a generator, not a classifier"),
        (CNN, {"steps": 257}, 400, "steps must be between 1 and 256; got 257"),
        (CNN, {"steps": "many"}, 400, "steps must be an integer"),
        (CNN, {"steps": "--5"}, 400, "steps must be an integer"),
        (CNN, {"steps": "\u00b2"}, 400, "steps must be an integer"),
        (CNN, {"target": "9" * 5000}, 400, "target must be an integer"),
        (CNN, {"target": "-1"}, 400, "target must be a class index"),
        (CNN, {"method": "lime"}, 400, "method must be one of"),
        (CNN, {"baseline": "noise"}, 400, "baseline must be one of"),
        (CNN, {"target": 10}, 400, "target must be a class index 0..9"),
        (CNN, {"format": "gif"}, 400, "format must be json or png"),
        (CNN, {"top_k": 11}, 422, "top_k"),
        (LSTM, {"method": "gradcam"}, 400, "no convolutional block for gradcam"),
        ("/v1/models/nope/explain", {}, 404, "nope"),
        ("/v1/models/vgg16/explain", {}, 409, "vgg16"),
    ],
)
async def test_bad_requests_get_a_clear_4xx(
    v2_client: httpx.AsyncClient, path: str, params: dict, status: int, message: str
) -> None:
    response = await v2_client.post(path, files=_files(garment_png()), params=params)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]


async def test_bad_bodies_get_a_clear_4xx(v2_client: httpx.AsyncClient) -> None:
    two = await v2_client.post(
        CNN, files=_files(garment_png(), garment_png(1)), params={"format": "png"}
    )
    assert two.status_code == 422 and "one input's heatmap" in two.json()["detail"]
    corrupt = await v2_client.post(
        CNN, content=b"\x89PNG nope", headers={"Content-Type": "image/png"}
    )
    assert corrupt.status_code in (400, 415, 422) and corrupt.json()["detail"]
    row = ",".join(["NaN"] * 28)
    nan_body = '{"inputs": [[[' + ",".join([f"[{row}]"] * 28) + "]]]}"
    nan = await v2_client.post(CNN, content=nan_body, headers={"Content-Type": "application/json"})
    assert 400 <= nan.status_code < 500 and nan.json()["detail"]
    wrong = await v2_client.post(CNN, json={"inputs": [[[1.0, 2.0]]]})
    assert wrong.status_code in (400, 422) and wrong.json()["detail"]
    empty = await v2_client.post(CNN, content=b"", headers={"Content-Type": "image/png"})
    assert 400 <= empty.status_code < 500


async def test_the_schema_documents_the_route(v2_client: httpx.AsyncClient) -> None:
    schema = (await v2_client.get("/openapi.json")).json()
    operation = schema["paths"]["/v1/models/{name}/explain"]["post"]
    names = {p["name"] for p in operation["parameters"]}
    assert {"name", "method", "steps", "baseline", "target", "format", "top_k"} <= names
    steps = next(p for p in operation["parameters"] if p["name"] == "steps")
    assert steps["schema"]["maximum"] == 256
    assert "multipart/form-data" in operation["requestBody"]["content"]


async def test_a_full_queue_answers_503_with_retry_after(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    settings = Settings(
        models=("cnn",),
        checkpoint_dir=fashion_checkpoints(tmp_path_factory.mktemp("explain-queue")),
        device="cpu",
        grpc_port=0,
        explain_queue=1,
    )
    async with running_app(settings) as client:
        runtime = client.app_state.registry.runtime("cnn")  # type: ignore[attr-defined]
        release = asyncio.Event()
        loop = asyncio.get_running_loop()
        held = asyncio.ensure_future(  # the device busy until released
            runtime.on_worker(
                lambda: asyncio.run_coroutine_threadsafe(release.wait(), loop).result()
            )
        )
        first = asyncio.ensure_future(client.post(CNN, files=_files(garment_png())))
        for _ in range(200):  # until the first one waits in the queue
            if runtime.explainer.waiting:
                break
            await asyncio.sleep(0.01)
        second = await client.post(CNN, files=_files(garment_png()))
        assert second.status_code == 503, second.text
        assert second.headers["Retry-After"] == "1"
        assert "explanation queue is full" in second.json()["detail"]
        too_many = await client.post(CNN, files=_files(garment_png(), garment_png(1)))
        assert (
            too_many.status_code == 413 and "TORCHGATE_EXPLAIN_QUEUE" in too_many.json()["detail"]
        )
        # predict is not held up by the explanation queue being full (only by the device)
        release.set()
        await held
        assert (await first).status_code == 200
        assert runtime.explainer.waiting == 0
        assert (
            await client.post("/v1/models/cnn/predict", files=_files(garment_png()))
        ).status_code == 200
