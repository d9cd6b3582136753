"""Parse JSON request bodies and nested-list tensors without per-element Python validation."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np
import orjson
from pydantic import ValidationError

from app.errors import BadRequest, InvalidInput, PayloadTooLarge


def describe_validation_error(exc: ValidationError) -> str:
    """A pydantic error as one line a client can act on: each field and what is wrong."""
    parts = []
    for error in exc.errors(include_url=False):
        location = ".".join(str(part) for part in error.get("loc", ()))
        message = error.get("msg", "invalid value")
        parts.append(f"{location}: {message}" if location else message)
    return "; ".join(parts[:5]) or "invalid request"


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


_QUOTE, _BACKSLASH = ord('"'), ord("\\")


def _string_quotes(data: np.ndarray) -> np.ndarray:
    """Positions of the quotes that open or close strings (not those escaped by an odd run of
    backslashes), in order."""
    quotes = np.flatnonzero(data == _QUOTE)
    if quotes.size == 0:
        return quotes
    slashes = np.flatnonzero(data == _BACKSLASH)
    if slashes.size == 0:
        return quotes
    # each backslash run: its start; a quote's run is the one that ends right before it
    starts = slashes[np.r_[True, np.diff(slashes) != 1]]
    before = quotes - 1
    run = np.searchsorted(starts, before, side="right") - 1
    ends_here = np.isin(before, slashes)
    length = np.where(ends_here & (run >= 0), before - starts[np.maximum(run, 0)] + 1, 0)
    return quotes[length % 2 == 0]


def json_depth(body: bytes) -> int:
    """How deep the brackets of a JSON text nest, brackets inside strings aside (exact for any
    text whose backslashes are all inside strings, i.e. all valid JSON; the parser refuses the
    rest anyway).

    Vectorized (numpy over the bytes), so its cost is a few passes at memory speed whatever the
    body holds: a scan of 3 MiB of ``[],`` in Python took half a second of the event loop."""
    data = np.frombuffer(body, dtype=np.uint8)
    opening = (data == ord("[")) | (data == ord("{"))
    brackets = np.flatnonzero(opening | (data == ord("]")) | (data == ord("}")))
    if brackets.size == 0:
        return 0
    steps = opening[brackets].view(np.int8) * np.int8(2) - np.int8(1)  # +1 opens, -1 closes
    quotes = _string_quotes(data)
    if quotes.size:
        steps = steps[np.searchsorted(quotes, brackets) % 2 == 0]  # even quotes before: outside
    return int(np.cumsum(steps, dtype=np.int32).max(initial=0))


# Containers a JSON body may hold whatever its size; beyond it, one per 16 bytes at most.
_FREE_CONTAINERS = 4096
_BYTES_PER_CONTAINER = 16
# What a parsed JSON value costs in memory, about (a list, a float, a short string).
PARSED_VALUE_BYTES = 64


def check_json(body: bytes, max_depth: int) -> int:
    """Refuse JSON a parser would pay dearly for, before any parser sees it, and return what
    parsing the rest will cost in memory (to hold in the upload budget meanwhile).

    Refused: nesting deeper than ``max_depth`` (tensors need five levels; a few dozen leave
    room for metadata), and a body made mostly of arrays and objects, which no tensor is (its
    rows hold numbers): 3 MiB of ``[],`` parse into a million lists that numpy or a validator
    would then walk one by one, holding the GIL. Counting is done by ``bytes.count`` (C); the
    depth scan runs only when there are enough brackets to matter."""
    containers = body.count(b"[") + body.count(b"{")
    if containers > max_depth and json_depth(body) > max_depth:
        raise BadRequest(
            f"the JSON body is nested deeper than {max_depth} levels (TORCHGATE_MAX_JSON_DEPTH)."
        )
    if containers > _FREE_CONTAINERS and containers * _BYTES_PER_CONTAINER > len(body):
        raise BadRequest(
            f"the JSON body holds {containers:,} arrays and objects in {len(body):,} bytes: "
            "a tensor's rows hold numbers; send it as flat data, or as binary."
        )
    return (body.count(b",") + containers + 1) * PARSED_VALUE_BYTES


def check_tensor_elements(count: int, limit: int) -> None:
    """One request's tensor may not exceed ``limit`` numbers (TORCHGATE_MAX_TENSOR_ELEMENTS)."""
    if count > limit:
        raise PayloadTooLarge(
            f"the input tensor has {count:,} elements; the limit is {limit:,} per request "
            "(TORCHGATE_MAX_TENSOR_ELEMENTS)."
        )
