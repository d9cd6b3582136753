"""Read a predict request in any of its three forms into image bytes or a float array."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import Request
from starlette.datastructures import UploadFile

from app.api.payloads import (
    check_batch_size,
    check_json,
    check_tensor_elements,
    decode_base64_images,
    float_array,
    parse_json_object,
)
from app.api.upload_budget import UploadBudget
from app.config import Settings
from app.errors import BadRequest, InvalidInput, PayloadTooLarge, UnsupportedMediaType

# Runs a function off the event loop and awaits its result (ModelRuntime.on_decode_pool).
Offload = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class PredictPayload:
    """Exactly one of ``images`` (encoded files) or ``array`` (a batch tensor) is set."""

    images: list[bytes] | None = None
    array: np.ndarray | None = None
    top_k: object = None


def media_type(content_type: str) -> str:
    """``image/png`` from ``image/PNG; charset=...``: the part that picks how a body is read."""
    return content_type.split(";", 1)[0].strip().lower()


def is_raw_image(media: str) -> bool:
    """One image as the whole body (``curl --data-binary @cat.jpg``): the raw-body form."""
    return media.startswith("image/") or media == "application/octet-stream"


async def _read_multipart(request: Request, max_images: int) -> PredictPayload:
    form = await request.form(max_files=max_images, max_fields=16)
    try:
        parts = form.getlist("file")
        if not parts:
            raise BadRequest(
                "the multipart body has no 'file' part; send one or more files as 'file'."
            )
        images = []
        for part in parts:
            if not isinstance(part, UploadFile):
                raise BadRequest("each 'file' part must be a file upload, not a text field.")
            images.append(await part.read())
        top_k = form.get("top_k")
        return PredictPayload(images=images, top_k=top_k)
    finally:
        await form.close()


def parse_json_payload(body: bytes, settings: Settings, budget: UploadBudget) -> PredictPayload:
    """A JSON predict body to images or an array: CPU work proportional to the body, which the
    route runs off the event loop when the body is large (``Offload``); what the parsed
    values cost in memory is held in ``budget`` meanwhile."""
    with budget.holding(check_json(body, settings.max_json_depth)):
        return _payload(parse_json_object(body), settings)


def _payload(payload: dict[str, Any], settings: Settings) -> PredictPayload:
    max_images = settings.max_images_per_request
    unknown = set(payload) - {"images", "inputs", "top_k"}
    if unknown:
        raise BadRequest(
            f"unknown field(s) {sorted(unknown)}; use 'images' or 'inputs', and 'top_k'."
        )
    has_images, has_inputs = "images" in payload, "inputs" in payload
    if has_images == has_inputs:
        raise BadRequest("send exactly one of 'images' (base64 files) or 'inputs' (a tensor).")
    top_k = payload.get("top_k")
    if has_images:
        images = decode_base64_images(payload["images"], max_images)
        return PredictPayload(images=images, top_k=top_k)
    inputs = payload["inputs"]
    if isinstance(inputs, list):  # refused before numpy walks a million rows
        check_batch_size(len(inputs), max_images)
    array = float_array(inputs)
    check_tensor_elements(array.size, settings.max_tensor_elements)
    check_batch_size(array.shape[0], max_images)
    return PredictPayload(array=array, top_k=top_k)


async def read_predict_payload(
    request: Request, settings: Settings, offload: Offload
) -> PredictPayload:
    """Dispatch on Content-Type: multipart/form-data, application/json, or a raw image body
    (``image/*`` or ``application/octet-stream``: one image, no multipart parsing, the
    cheapest form for small images). A JSON body over TORCHGATE_JSON_OFFLOAD_BYTES is parsed
    by ``offload`` (the model's decode pool), never on the event loop."""
    media = media_type(request.headers.get("content-type", ""))
    if media == "multipart/form-data":
        return await _read_multipart(request, settings.max_images_per_request)
    if media == "application/json" or media.endswith("+json"):
        body = await request.body()
        budget = request.app.state.upload_budget
        if len(body) > settings.json_offload_bytes:
            return await offload(parse_json_payload, body, settings, budget)
        return parse_json_payload(body, settings, budget)
    if is_raw_image(media):
        return PredictPayload(images=[await request.body()])
    raise UnsupportedMediaType(
        f"Content-Type {media or '(none)'} is not supported; send multipart/form-data with "
        "'file' parts, application/json with 'images' or 'inputs', or one image as the body "
        "(Content-Type image/png, image/jpeg, ...)."
    )


async def read_small_body(request: Request, limit: int) -> bytes:
    """The body of a route that takes a few JSON fields, refused (413) past ``limit`` bytes by
    its declared length or as it streams: such a body is parsed on the event loop."""
    declared = request.headers.get("content-length", "")
    too_large = PayloadTooLarge(f"this endpoint takes a JSON body of at most {limit:,} bytes.")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def resolve_top_k(*candidates: object, num_classes: int, default: int = 5) -> int:
    """The first top_k given (query, then body), checked against the model's class count."""
    value = next((c for c in candidates if c is not None and c != ""), None)
    if value is None:
        return min(default, num_classes)
    if isinstance(value, bool):
        raise InvalidInput("top_k must be an integer.")
    try:
        top_k = int(value) if isinstance(value, (int, str)) else None
    except ValueError:
        top_k = None
    if top_k is None:
        raise InvalidInput(f"top_k must be an integer; got {value!r}.")
    if not 1 <= top_k <= num_classes:
        raise InvalidInput(f"top_k must be between 1 and {num_classes}; got {top_k}.")
    return top_k
