"""The v1 REST adapter's steps: which model may answer, and the answers' bodies and headers."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
import torch

from app.api.pngs import encode_grid, encode_png
from app.api.responses import FastJSONResponse, version_headers
from app.errors import BadRequest
from app.serving.heads import classify
from app.serving.registry import ModelRegistry
from app.serving.runtime import ModelRuntime

PREDICT_PATH = "/v1/models/{name}/predict"


def classifier(registry: ModelRegistry, name: str) -> ModelRuntime:
    """The ready runtime of classifier ``name`` (404 unknown, 409 not ready, 400 a generator)."""
    runtime = registry.runtime(name)
    if not runtime.spec.is_classifier:
        raise BadRequest(f"model {name!r} is a generator; use POST /v1/models/{name}/generate.")
    return runtime


def generator(registry: ModelRegistry, name: str) -> ModelRuntime:
    """The ready runtime of generator ``name`` (404 unknown, 409 not ready, 400 a classifier)."""
    runtime = registry.runtime(name)
    if runtime.spec.is_classifier:
        raise BadRequest(f"model {name!r} is a classifier; use POST /v1/models/{name}/predict.")
    return runtime


def answer_headers(runtime: ModelRuntime, version: int) -> dict[str, str]:
    """Which parameters answered: their version and checksum."""
    return version_headers(version, runtime.sha256_of(version))


async def predict_response(
    runtime: ModelRuntime, name: str, samples: list[torch.Tensor], top_k: int
) -> FastJSONResponse:
    """Classify decoded samples and build v1's answer: top-k per input, in input order."""
    predictions, version = await classify(runtime, samples, top_k)
    body = {
        "model": name,
        "parameters_version": version,
        "predictions": [[p.__dict__ for p in per_input] for per_input in predictions],
    }
    return FastJSONResponse(body, headers=answer_headers(runtime, version))


async def encode_pngs(
    runtime: ModelRuntime, images: Sequence[np.ndarray], grid: bool
) -> list[bytes]:
    """Generated images as one PNG grid, or one PNG each (in parallel), off the event loop."""
    if grid:
        return [await runtime.on_decode_pool(encode_grid, images)]
    encoding = (runtime.on_decode_pool(encode_png, image) for image in images)
    return list(await asyncio.gather(*encoding))
