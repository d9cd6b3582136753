"""Parse JSON request bodies and nested-list tensors without per-element Python validation."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

import numpy as np
import orjson

from app.errors import BadRequest, InvalidInput, PayloadTooLarge


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


def decode_base64(item: str | bytes, where: str) -> bytes:
    """One base64 image, strictly (bad padding or alphabet is a 400 naming ``where``); a
    ``data:`` URL prefix is dropped. v1's ``images`` and v2's JSON BYTES inputs both use it."""
    try:
        text = item.encode("ascii") if isinstance(item, str) else item
        if text.startswith(b"data:") and b"," in text:
            text = text.split(b",", 1)[1]
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:  # non-ASCII text is a ValueError too
        raise BadRequest(f"{where} is not valid base64 ({exc}).") from exc


def check_batch_size(count: int, limit: int) -> None:
    """At most ``limit`` inputs per request (TORCHGATE_MAX_IMAGES_PER_REQUEST), every protocol."""
    if count > limit:
        raise InvalidInput(
            f"{count} inputs in one request; the limit is {limit} "
            "(TORCHGATE_MAX_IMAGES_PER_REQUEST)."
        )


def decode_base64_images(items: object, limit: int) -> list[bytes]:
    """Decode ``{"images": [base64, ...]}`` entries strictly (bad padding or alphabet is 400)."""
    if not isinstance(items, list) or not items:
        raise BadRequest("'images' must be a non-empty list of base64-encoded image files.")
    check_batch_size(len(items), limit)
    decoded = []
    for position, item in enumerate(items):
        if not isinstance(item, str):
            raise BadRequest(f"images[{position}] must be a base64 string.")
        decoded.append(decode_base64(item, f"images[{position}]"))
    return decoded


# A JSON string token (skipped whole, at C speed) or one bracket; only brackets move the depth.
_JSON_NESTING = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def check_json_depth(body: bytes, max_depth: int) -> None:
    """Refuse JSON nested deeper than ``max_depth`` before any parser recurses into it.

    Tensors need at most five levels; a few dozen leave room for metadata. The scan visits
    brackets and whole strings only, so its cost follows the rows, not the numbers."""
    depth = 0
    for match in _JSON_NESTING.finditer(body):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            if depth > max_depth:
                raise BadRequest(
                    f"the JSON body is nested deeper than {max_depth} levels "
                    "(TORCHGATE_MAX_JSON_DEPTH)."
                )
        elif token in (b"]", b"}"):
            depth -= 1


def check_tensor_elements(count: int, limit: int) -> None:
    """One request's tensor may not exceed ``limit`` numbers (TORCHGATE_MAX_TENSOR_ELEMENTS)."""
    if count > limit:
        raise PayloadTooLarge(
            f"the input tensor has {count:,} elements; the limit is {limit:,} per request "
            "(TORCHGATE_MAX_TENSOR_ELEMENTS)."
        )
