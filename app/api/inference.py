"""Inference: classification (v1 predict) and generation (gan)."""

from __future__ import annotations

import base64
from typing import Annotated, Any

import torch
from fastapi import APIRouter, Query, Request, Response

from app.api.deps import RegistryDep, SettingsDep
from app.api.parsing import read_predict_payload, resolve_top_k
from app.api.schemas import (
    ErrorResponse,
    GenerateRequest,
    GenerateResponse,
    JsonPredictRequest,
    PredictResponse,
)
from app.errors import BadRequest
from app.responses import FastJSONResponse, version_headers
from app.serving.runtime import ModelRuntime

router = APIRouter(prefix="/v1", tags=["inference"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 404, 409, 413, 415, 422, 503)
}

_PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {"type": "array", "items": {"type": "string", "format": "binary"}},
                        "top_k": {"type": "integer", "minimum": 1},
                    },
                    "required": ["file"],
                }
            },
            "application/json": {"schema": JsonPredictRequest.model_json_schema()},
            "image/*": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


def _version_headers(runtime: ModelRuntime, version: int) -> dict[str, str]:
    return version_headers(version, runtime.sha256_of(version))


@router.post(
    "/models/{name}/predict",
    response_model=PredictResponse,
    responses=_ERRORS,
    openapi_extra=_PREDICT_BODY,
)
async def predict(
    name: str,
    request: Request,
    registry: RegistryDep,
    settings: SettingsDep,
    top_k: Annotated[int | None, Query(ge=1, description="Labels per input (default 5).")] = None,
) -> FastJSONResponse:
    """Classify images (multipart files, base64 JSON or one raw image body) or a JSON tensor."""
    runtime = registry.runtime(name)
    if not runtime.spec.is_classifier:
        raise BadRequest(f"model {name!r} is a generator; use POST /v1/models/{name}/generate.")
    payload = await read_predict_payload(request, settings)
    k = resolve_top_k(top_k, payload.top_k, num_classes=len(runtime.labels))
    if payload.images is not None:
        samples = await runtime.decode_images(payload.images)
    else:
        assert payload.array is not None
        samples = runtime.samples_from_array(payload.array)
    return await predict_response(runtime, name, samples, k)


async def predict_response(
    runtime: ModelRuntime, name: str, samples: list[torch.Tensor], top_k: int
) -> FastJSONResponse:
    """Classify decoded samples and build the answer (shared with the raw-body fast path)."""
    predictions, version = await runtime.classify(samples, top_k)
    body = {
        "model": name,
        "parameters_version": version,
        "predictions": [[p.__dict__ for p in per_input] for per_input in predictions],
    }
    return FastJSONResponse(body, headers=_version_headers(runtime, version))


@router.post(
    "/models/{name}/generate",
    response_model=GenerateResponse,
    responses={**_ERRORS, 200: {"content": {"image/png": {}}, "description": "PNG grid or JSON."}},
)
async def generate(name: str, request: GenerateRequest, registry: RegistryDep) -> Response:
    """Draw images from the class-conditional generator, as one PNG grid or base64 PNGs."""
    runtime = registry.runtime(name)
    if runtime.spec.is_classifier:
        raise BadRequest(f"model {name!r} is a classifier; use POST /v1/models/{name}/predict.")
    generation = await runtime.generate(request.n, request.label, request.seed)
    headers = _version_headers(runtime, generation.version)
    headers["X-Seed"] = str(generation.seed)
    if request.format == "png":
        grid = (await runtime.encode_pngs(generation.images, grid=True))[0]
        return Response(grid, media_type="image/png", headers=headers)
    pngs = await runtime.encode_pngs(generation.images, grid=False)
    body = {
        "model": name,
        "seed": generation.seed,
        "labels": generation.labels,
        "parameters_version": generation.version,
        "images": [base64.b64encode(png).decode("ascii") for png in pngs],
    }
    return FastJSONResponse(body, headers=headers)
