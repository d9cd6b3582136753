"""Open Inference Protocol (KServe v2 / Triton HTTP): health, metadata and inference.

Errors on these routes are ``{"error": "..."}`` (app/errors.py picks the field by prefix).
Each model has one version, "1"; which parameters answered (a reinitialize or reload changes
them) is in the response's ``parameters`` and in the same headers as v1.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from fastapi import APIRouter, Request, Response

from app.api import open_inference as oip
from app.api.deps import RegistryDep, liveness_failure
from app.api.http_errors import INFERENCE_ERROR_STATUSES
from app.api.parameters import MODEL_NAME, MODEL_VERSION, serving_state
from app.api.responses import FastJSONResponse, version_headers
from app.api.routes import RequestRoute
from app.api.v2_outputs import encode_response
from app.api.v2_requests import ReadRequest, is_encoded, read_request
from app.api.v2_schemas import (
    ErrorV2Response,
    InferenceResponse,
    LiveResponse,
    ModelMetadataResponse,
    ModelReadyResponse,
    ReadyResponse,
    ServerMetadataResponse,
    inference_request_schema,
)
from app.config import Settings
from app.serving.registry import ModelRegistry
from app.serving.runtime import ModelRuntime
from app.tracing import current_request_id

_TAGS: list[str | Enum] = ["open inference protocol (v2)"]
# The inference routes, ahead of everything else (app/api/__init__.py): the ones clients call
# thousands of times a second, each taking the Request alone (app/api/routes.py).
infer_router = APIRouter(prefix="/v2", tags=_TAGS, route_class=RequestRoute)
router = APIRouter(prefix="/v2", tags=_TAGS)

HEADER_LENGTH = "Inference-Header-Content-Length"

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorV2Response} for code in INFERENCE_ERROR_STATUSES
}
_INFER_OPENAPI = {
    "parameters": [MODEL_NAME],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": inference_request_schema()},
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
                "description": "The JSON request, then binary tensors; "
                "Inference-Header-Content-Length gives the JSON's length.",
            },
        },
    },
}
_INFER_RESPONSES: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    200: {"content": {"application/octet-stream": {}}, "description": "JSON, or JSON + binary."},
}


def _metadata(name: str, version: str | None, registry: ModelRegistry) -> FastJSONResponse:
    return FastJSONResponse(oip.model_metadata(registry, name, version))


def _model_ready(name: str, version: str | None, registry: ModelRegistry) -> FastJSONResponse:
    model, ready = oip.model_ready(registry, name, version)
    return FastJSONResponse({"name": model, "ready": ready}, 200 if ready else 503)


async def _infer(request: Request) -> Response:
    # parameters read here, declared for OpenAPI in app/api/parameters.py
    name: str = request.path_params["name"]
    version: str | None = request.path_params.get("version")
    registry, settings = serving_state(request)
    runtime = oip.model_runtime(registry, name, version)
    headers = request.headers
    body = await request.body()
    encoding = headers.get("content-encoding")
    budget = request.app.state.upload_budget
    work = (body, encoding, headers.get(HEADER_LENGTH), runtime, settings, budget)
    if is_encoded(encoding) or len(body) > settings.json_offload_bytes:
        read = await runtime.on_decode_pool(read_request, *work)
    else:
        read = read_request(*work)
    try:
        return await _answer(runtime, read, settings)
    finally:
        budget.give_back(read.held_bytes)


async def _answer(runtime: ModelRuntime, read: ReadRequest, settings: Settings) -> Response:
    parsed = read.parsed
    requested = parsed.output_requests()
    outputs = [output for output, _ in requested]
    result = await oip.infer(
        runtime, read.tensors, outputs, parsed.top_k(), settings, parsed.parameters
    )
    binary_flags = [flag for _, flag in requested] or [parsed.binary_default()] * len(
        result.outputs
    )
    head = {
        "model_name": result.model_name,
        "model_version": oip.MODEL_VERSION,
        "id": parsed.id if parsed.id is not None else current_request_id(),
        "parameters": result.parameters,
    }
    content, header_length = encode_response(
        head, list(zip(result.outputs, binary_flags, strict=True))
    )
    response_headers = version_headers(result.parameters_version, result.parameters_sha256)
    if header_length is None:
        return Response(content, media_type="application/json", headers=response_headers)
    response_headers[HEADER_LENGTH] = str(header_length)
    return Response(content, media_type="application/octet-stream", headers=response_headers)


@infer_router.post(
    "/models/{name}/infer",
    response_model=InferenceResponse,
    responses=_INFER_RESPONSES,
    openapi_extra=_INFER_OPENAPI,
)
async def infer_tensors(request: Request) -> Response:
    """Run the model on JSON or binary tensors (the binary tensor data extension)."""
    return await _infer(request)


@infer_router.post(
    "/models/{name}/versions/{version}/infer",
    response_model=InferenceResponse,
    responses=_INFER_RESPONSES,
    openapi_extra={**_INFER_OPENAPI, "parameters": [MODEL_NAME, MODEL_VERSION]},
)
async def infer_version_tensors(request: Request) -> Response:
    """Inference on an explicit model version (every model has version 1)."""
    return await _infer(request)


@router.get("", response_model=ServerMetadataResponse)
async def get_server_metadata() -> FastJSONResponse:
    """Server metadata: name, version and the protocol extensions it supports."""
    return FastJSONResponse(oip.server_metadata())


@router.get("/health/live", response_model=LiveResponse, responses={503: {"model": LiveResponse}})
async def get_server_live(request: Request) -> FastJSONResponse:
    """Liveness: the process is up and the event loop answers, its device still works and
    its parameter sync still ticks (otherwise only a restart helps: 503, as /healthz)."""
    if liveness_failure(request) is not None:
        return FastJSONResponse({"live": False}, status_code=503)
    return FastJSONResponse({"live": True})


@router.get(
    "/health/ready", response_model=ReadyResponse, responses={503: {"model": ReadyResponse}}
)
async def get_server_ready(request: Request, registry: RegistryDep) -> FastJSONResponse:
    """Readiness: 200 once every enabled model finished loading (ready or unavailable) and
    this process caught up with the control store, until its stop signal (KServe's probe
    must send new work elsewhere from then on, as /readyz does)."""
    ready = registry.ready and not request.app.state.drain.started
    return FastJSONResponse({"ready": ready}, status_code=200 if ready else 503)


@router.get("/models/{name}", response_model=ModelMetadataResponse, responses=_ERRORS)
async def get_model_metadata(name: str, registry: RegistryDep) -> FastJSONResponse:
    """Model metadata: versions, platform, input and output tensors (-1: variable dimension)."""
    return _metadata(name, None, registry)


@router.get(
    "/models/{name}/versions/{version}", response_model=ModelMetadataResponse, responses=_ERRORS
)
async def get_model_version_metadata(
    name: str, version: str, registry: RegistryDep
) -> FastJSONResponse:
    """Model metadata for an explicit version (every model has version 1)."""
    return _metadata(name, version, registry)


@router.get("/models/{name}/ready", response_model=ModelReadyResponse, responses=_ERRORS)
async def get_model_ready(name: str, registry: RegistryDep) -> FastJSONResponse:
    """Model readiness: 200 when the model serves, 503 while loading or unavailable."""
    return _model_ready(name, None, registry)


@router.get(
    "/models/{name}/versions/{version}/ready",
    response_model=ModelReadyResponse,
    responses=_ERRORS,
)
async def get_model_version_ready(
    name: str, version: str, registry: RegistryDep
) -> FastJSONResponse:
    """Model readiness for an explicit version."""
    return _model_ready(name, version, registry)
