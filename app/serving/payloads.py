"""Parse JSON request bodies and nested-list tensors without per-element Python validation."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np
import orjson

from app.errors import BadRequest, InvalidInput


def parse_json_object(body: bytes) -> dict[str, Any]:
    """orjson is strict (no NaN literals, bounded nesting) and fast on large number lists."""
    if not body:
        raise BadRequest("the request body is empty; send a JSON object.")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON ({exc}).") from exc
    if not isinstance(payload, dict):
        raise BadRequest('the JSON body must be an object, e.g. {"inputs": [...]}.')
    return payload


def float_array(nested: object, field: str = "inputs") -> np.ndarray:
    """A rectangular float32 array from nested lists of numbers; ragged or non-numeric is 422."""
    if not isinstance(nested, list) or not nested:
        raise InvalidInput(f"'{field}' must be a non-empty nested list of numbers.")
    try:
        array = np.array(nested)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidInput(
            f"'{field}' must be a rectangular nested list of numbers (every row the same length)."
        ) from exc
    if array.dtype.kind not in "biuf":
        raise InvalidInput(f"'{field}' must contain only numbers; got {array.dtype.name} values.")
    with np.errstate(over="ignore"):
        return np.ascontiguousarray(array, dtype=np.float32)


def decode_base64_images(items: object, limit: int) -> list[bytes]:
    """Decode ``{"images": [base64, ...]}`` entries strictly (bad padding or alphabet is 400)."""
    if not isinstance(items, list) or not items:
        raise BadRequest("'images' must be a non-empty list of base64-encoded image files.")
    if len(items) > limit:
        raise InvalidInput(f"{len(items)} images in one request; the limit is {limit}.")
    decoded = []
    for position, item in enumerate(items):
        if not isinstance(item, str):
            raise BadRequest(f"images[{position}] must be a base64 string.")
        if item.startswith("data:") and "," in item:
            item = item.split(",", 1)[1]
        try:
            decoded.append(base64.b64decode(item, validate=True))
        except (binascii.Error, ValueError) as exc:
            raise BadRequest(f"images[{position}] is not valid base64 ({exc}).") from exc
    return decoded
