"""The app on ``device="cuda"``: serving, reinitialize and reload give the CPU's answers and
checksums; skipped without a GPU.

TORCHGATE_TEST_CUDA_STANDIN=cpu runs them with the CPU in CUDA's place (a dry run of the test
logic on a machine without a GPU).
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Callable

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from app.config import Settings
from tests.helpers.apps import admin_headers, running_app
from tests.helpers.images import image_bytes

STANDIN = os.environ.get("TORCHGATE_TEST_CUDA_STANDIN") == "cpu"
TARGET = "cpu" if STANDIN else "cuda"
pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not (torch.cuda.is_available() or STANDIN), reason="needs a CUDA device"),
]
TRAINED = ("cnn", "lstm", "gan")
MAX_PIXEL_DIFFERENCE = 3  # of 255: the gan's fp32 outputs differ by ~1e-3 (TF32 convolutions)


async def _answers(client: httpx.AsyncClient) -> dict[str, object]:
    """What a client sees from the three trained models for fixed inputs."""
    shirt = image_bytes((28, 28), fmt="PNG")
    cnn = await client.post(
        "/v1/models/cnn/predict?top_k=3", content=shirt, headers={"content-type": "image/png"}
    )
    rows = np.random.default_rng(0).normal(size=(2, 28, 28)).round(3).tolist()
    lstm = await client.post("/v1/models/lstm/predict", json={"inputs": rows})
    gan = await client.post("/v1/models/gan/generate", json={"n": 4, "seed": 7, "format": "json"})
    for response in (cnn, lstm, gan):
        assert response.status_code == 200, response.text
    images = [
        np.asarray(Image.open(io.BytesIO(base64.b64decode(item))), dtype=np.int16)
        for item in gan.json()["images"]
    ]
    return {
        "cnn": [p["index"] for p in cnn.json()["predictions"][0]],
        "lstm": [row[0]["index"] for row in lstm.json()["predictions"]],
        "gan": np.stack(images),
    }


async def test_the_app_serves_the_trained_models_on_cuda(
    settings_factory: Callable[..., Settings],
) -> None:
    answers = {}
    for device in ("cpu", TARGET):
        async with running_app(settings_factory(models=TRAINED, device=device)) as client:
            models = (await client.get("/v1/models")).json()["models"]
            assert {m["name"]: m["status"] for m in models} == dict.fromkeys(TRAINED, "ready")
            assert all(m["device"].startswith(device) for m in models)
            answers[device] = await _answers(client)
            assert (await client.get("/readyz")).status_code == 200
    cpu, cuda = answers["cpu"], answers[TARGET]
    assert cuda["cnn"] == cpu["cnn"]
    assert cuda["lstm"] == cpu["lstm"]
    difference = np.abs(cuda["gan"] - cpu["gan"]).max()
    assert difference <= MAX_PIXEL_DIFFERENCE


async def _checksums(client: httpx.AsyncClient, model: str) -> list[str]:
    """The checksum as loaded, after a seeded reinitialize (each scheme), after a reload."""
    seen = [(await client.get(f"/v1/models/{model}")).json()["parameters_sha256"]]
    for scheme in ("default", "kaiming_normal", "normal"):
        response = await client.post(
            f"/admin/models/{model}/reinitialize",
            json={"scheme": scheme, "seed": 11},
            headers=admin_headers(),
        )
        assert response.status_code == 200, response.text
        seen.append(response.json()["parameters_sha256"])
    response = await client.post(f"/admin/models/{model}/reload", headers=admin_headers())
    assert response.status_code == 200, response.text
    seen.append(response.json()["parameters_sha256"])
    predict = await client.post(
        f"/v1/models/{model}/predict",
        content=image_bytes((28, 28), fmt="PNG"),
        headers={"content-type": "image/png"},
    )
    assert predict.status_code == 200  # still serving after the swaps
    return seen


async def test_reinitialize_and_reload_on_cuda_give_the_cpus_checksums(
    settings_factory: Callable[..., Settings],
) -> None:
    """The shared-state contract: a seeded reinitialize gives the same sha256 in every
    process, whatever its device (and the cnn serves channels_last)."""
    checksums = {}
    for device in ("cpu", TARGET):
        async with running_app(settings_factory(models=("cnn",), device=device)) as client:
            checksums[device] = await _checksums(client, "cnn")
    assert checksums[TARGET] == checksums["cpu"]
    loaded, *reinitialized, reloaded = checksums["cpu"]
    assert len(set(reinitialized)) == 3 and loaded not in reinitialized
    assert reloaded == loaded
