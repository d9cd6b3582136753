"""Explanations on ``device="cuda"``: the CPU's attributions, the LSTM's backward in eval mode
(cuDNN cannot run it: the explainer turns cuDNN off for it, then back on), serving untouched;
skipped without a GPU.

TORCHGATE_TEST_CUDA_STANDIN=cpu runs them with the CPU in CUDA's place (a dry run of the test
logic on a machine without a GPU).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import httpx
import numpy as np
import pytest
import torch

from app.config import Settings
from tests.helpers.apps import graphs_settled, running_app
from tests.helpers.images import garment_png

STANDIN = os.environ.get("TORCHGATE_TEST_CUDA_STANDIN") == "cpu"
TARGET = "cpu" if STANDIN else "cuda"
pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not (torch.cuda.is_available() or STANDIN), reason="needs a CUDA device"),
]
CASES = [
    ("cnn", {"method": "integrated_gradients", "steps": 64}),
    ("cnn", {"method": "gradcam"}),
    ("lstm", {"method": "integrated_gradients", "steps": 64, "baseline": "blur"}),
    ("lstm", {"method": "saliency"}),
]


async def _explanations(client: httpx.AsyncClient) -> list[dict]:
    answers = []
    for name, params in CASES:
        response = await client.post(
            f"/v1/models/{name}/explain",
            content=garment_png(),
            headers={"content-type": "image/png"},
            params=params,
        )
        assert response.status_code == 200, response.text
        answers.append(response.json()["explanations"][0])
    return answers


async def _predictions(client: httpx.AsyncClient) -> list[bytes]:
    return [
        (
            await client.post(
                f"/v1/models/{name}/predict",
                content=garment_png(),
                headers={"content-type": "image/png"},
            )
        ).content
        for name in ("cnn", "lstm")
    ]


async def test_cuda_explanations_match_the_cpu_and_leave_serving_as_it_was(
    settings_factory: Callable[..., Settings],
) -> None:
    models = ("cnn", "lstm")
    async with running_app(settings_factory(models=models, device="cpu")) as cpu:
        expected = await _explanations(cpu)
    async with running_app(settings_factory(models=models, device=TARGET)) as gpu:
        await graphs_settled(gpu, *models)
        flags = (torch.backends.cudnn.enabled, torch.backends.cudnn.benchmark)
        before = await _predictions(gpu)
        got = await _explanations(gpu)
        assert await _predictions(gpu) == before
        assert (torch.backends.cudnn.enabled, torch.backends.cudnn.benchmark) == flags
        registry = gpu.app_state.registry  # type: ignore[attr-defined]
        for name in models:
            module = registry.runtime(name).module
            assert not module.training
            assert not any(p.requires_grad or p.grad is not None for p in module.parameters())
    for (name, params), want, have in zip(CASES, expected, got, strict=True):
        assert have["target"] == want["target"], (name, params)
        scale = float(np.abs(want["attributions"]).max())
        np.testing.assert_allclose(  # TF32 convolutions on the GPU: close, not equal
            have["attributions"], want["attributions"], rtol=1e-2, atol=1e-2 * scale
        )
