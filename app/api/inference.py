"""Inference: classification (v1 predict) and generation (gan)."""

from __future__ import annotations

import base64
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import ValidationError

from app.api.http_errors import INFERENCE_ERROR_STATUSES
from app.api.parameters import MODEL_NAME, SMALL_JSON_BYTES, TOP_K, serving_state
from app.api.parsing import read_predict_payload, read_small_body, resolve_top_k
from app.api.payloads import describe_validation_error
from app.api.responses import FastJSONResponse
from app.api.routes import RequestRoute
from app.api.schemas import (
    ErrorResponse,
    GenerateRequest,
    GenerateResponse,
    JsonPredictRequest,
    PredictResponse,
)
from app.api.v1_adapter import (
    PREDICT_PATH,
    answer_headers,
    classifier,
    encode_pngs,
    generator,
    predict_response,
)
from app.errors import InvalidInput
from app.serving.heads import generate as generate_images

# every endpoint here takes the Request alone and returns a Response: see app/api/routes.py
router = APIRouter(prefix="/v1", tags=["inference"], route_class=RequestRoute)

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in INFERENCE_ERROR_STATUSES
}

_PREDICT_OPENAPI = {
    "parameters": [MODEL_NAME, TOP_K],
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
    },
}


# what predict reads, and explain with it (app/api/explain.py)
PREDICT_REQUEST_BODY = _PREDICT_OPENAPI["requestBody"]


@router.post(
    PREDICT_PATH.removeprefix("/v1"),
    response_model=PredictResponse,
    responses=_ERRORS,
    openapi_extra=_PREDICT_OPENAPI,
)
async def predict(request: Request) -> FastJSONResponse:
    """Classify images (multipart files, base64 JSON or one raw image body) or a JSON tensor."""
    name: str = request.path_params["name"]  # parameters read here: app/api/parameters.py
    registry, settings = serving_state(request)
    runtime = classifier(registry, name)
    payload = await read_predict_payload(request, settings, runtime.on_decode_pool)
    top_k = request.query_params.get("top_k") if request.scope["query_string"] else None
    k = resolve_top_k(top_k, payload.top_k, num_classes=len(runtime.labels))
    if payload.images is not None:
        samples = await runtime.decode_images(payload.images)
    else:
        assert payload.array is not None
        samples = runtime.samples_from_array(payload.array)
    return await predict_response(runtime, name, samples, k)


_GENERATE_OPENAPI = {
    "parameters": [MODEL_NAME],
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": GenerateRequest.model_json_schema()}},
    },
}


@router.post(
    "/models/{name}/generate",
    response_model=GenerateResponse,
    responses={**_ERRORS, 200: {"content": {"image/png": {}}, "description": "PNG grid or JSON."}},
    openapi_extra=_GENERATE_OPENAPI,
)
async def generate(request: Request) -> Response:
    """Draw images from the class-conditional generator, as one PNG grid or base64 PNGs."""
    name: str = request.path_params["name"]  # parameters read here: app/api/parameters.py
    registry, _ = serving_state(request)
    runtime = generator(registry, name)
    body = await read_small_body(request, SMALL_JSON_BYTES)  # at most a few fields
    try:
        params = GenerateRequest.model_validate_json(body or b"{}")
    except ValidationError as exc:
        raise InvalidInput(describe_validation_error(exc)) from exc
    generation = await generate_images(runtime, params.n, params.label, params.seed)
    headers = answer_headers(runtime, generation.version)
    headers["X-Seed"] = str(generation.seed)
    if params.format == "png":
        grid = (await encode_pngs(runtime, generation.images, grid=True))[0]
        return Response(grid, media_type="image/png", headers=headers)
    pngs = await encode_pngs(runtime, generation.images, grid=False)
    body = {
        "model": name,
        "seed": generation.seed,
        "labels": generation.labels,
        "parameters_version": generation.version,
        "images": [base64.b64encode(png).decode("ascii") for png in pngs],
    }
    return FastJSONResponse(body, headers=headers)
