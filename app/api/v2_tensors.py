"""Open Inference Protocol tensors: datatypes, JSON and binary data, and the body layout.

The binary tensor data extension (what ``tritonclient.http`` sends by default) puts the JSON
header first and the raw tensors after it, in input order; ``Inference-Header-Content-Length``
says where the JSON ends and each input's ``binary_data_size`` how many bytes are its own.
Everything a client can get wrong here is a 400 that names the tensor and the mismatch.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from app.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

BYTES = "BYTES"
# Little-endian, as the binary extension specifies; JSON data is cast to the same types.
DATATYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
_JSON_KINDS = {"b": "b", "u": "iu", "i": "iu", "f": "iuf"}  # numpy kinds each type accepts
LENGTH_PREFIX = struct.Struct("<I")  # a BYTES element's length
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class InputLike(Protocol):
    """One ``inputs`` entry of an inference request (the API's schema satisfies it)."""

    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any]
    data: Any


@dataclass(frozen=True)
class Tensor:
    """A decoded input: an array of ``shape``, or for BYTES the flat list of elements."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray | list[bytes]
    binary: bool


@dataclass(frozen=True)
class OutputTensor:
    """A result to send: an array, or for BYTES the flat list of strings."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray | list[str]


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo ``Content-Encoding: gzip|deflate`` (tritonclient's request compression), bounded."""
    if encoding is None or encoding.strip().lower() in ("", "identity"):
        return body
    wbits = _WBITS.get(encoding.strip().lower())
    if wbits is None:
        raise UnsupportedMediaType(
            f"Content-Encoding {encoding!r} is not supported; send gzip, deflate or none."
        )
    inflater = zlib.decompressobj(wbits)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BadRequest(f"the {encoding} request body cannot be decompressed ({exc}).") from exc
    if len(data) > limit:
        raise PayloadTooLarge(f"the decompressed request body is larger than {limit:,} bytes.")
    if not inflater.eof:
        raise BadRequest(f"the {encoding} request body is truncated.")
    return data


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, memoryview]:
    """The JSON header and the binary data after it (none without the header)."""
    if header_length is None:
        return body, memoryview(b"")
    try:
        length = int(header_length)
    except ValueError:
        length = -1
    if not 0 < length <= len(body):
        raise BadRequest(
            f"Inference-Header-Content-Length {header_length!r} must be a length between 1 and "
            f"the body size ({len(body)} bytes)."
        )
    view = memoryview(body)
    return bytes(view[:length]), view[length:]


def _shape_text(shape: Sequence[int]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def _split_bytes(chunk: memoryview, name: str) -> list[bytes]:
    """BYTES elements: each a 4-byte little-endian length and that many bytes."""
    items, offset, end = [], 0, len(chunk)
    while offset < end:
        if offset + 4 > end:
            raise BadRequest(f"input '{name}': a BYTES element's 4-byte length is cut off.")
        (size,) = LENGTH_PREFIX.unpack_from(chunk, offset)
        offset += 4
        if offset + size > end:
            raise BadRequest(f"input '{name}': a BYTES element is longer than its binary data.")
        items.append(bytes(chunk[offset : offset + size]))
        offset += size
    return items


def _flatten_strings(data: object, name: str) -> list[bytes]:
    stack, items = [data], []
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, str):
            items.append(item.encode())
        else:
            raise BadRequest(f"input '{name}': BYTES data must be strings; got {item!r:.40}.")
    return items


def _from_json(data: object, datatype: str, shape: tuple[int, ...], name: str) -> Any:
    if not isinstance(data, list):
        raise BadRequest(f"input '{name}': 'data' must be a (flat or nested) list.")
    if datatype == BYTES:
        return _flatten_strings(data, name)
    dtype = DATATYPES[datatype]
    try:
        array = np.array(data)
    except (ValueError, TypeError, OverflowError) as exc:
        raise BadRequest(
            f"input '{name}': 'data' must be a flat list or nested lists of shape "
            f"{_shape_text(shape)} (every row the same length)."
        ) from exc
    if array.size and array.dtype.kind not in _JSON_KINDS[dtype.kind]:
        raise BadRequest(
            f"input '{name}': {datatype} data must be {_kind_words(dtype)}; "
            f"got {array.dtype.name} values."
        )
    if array.ndim != 1 and array.shape != shape:
        raise BadRequest(
            f"input '{name}': nested data of shape {_shape_text(array.shape)} does not match "
            f"the declared shape {_shape_text(shape)}; send it flat or nested as declared."
        )
    if array.size and dtype.kind in "iu":
        info = np.iinfo(dtype)
        if array.min() < info.min or array.max() > info.max:
            raise BadRequest(f"input '{name}': values do not fit {datatype}.")
    with np.errstate(over="ignore"):
        return array.astype(dtype.newbyteorder("="))


def _kind_words(dtype: np.dtype[Any]) -> str:
    return {"b": "true/false", "u": "integers", "i": "integers"}.get(dtype.kind, "numbers")


def _from_binary(chunk: memoryview, datatype: str, count: int, name: str) -> Any:
    if datatype == BYTES:
        return _split_bytes(chunk, name)
    dtype = DATATYPES[datatype]
    if len(chunk) != count * dtype.itemsize:
        raise BadRequest(
            f"input '{name}': binary_data_size is {len(chunk)} bytes, but {count} {datatype} "
            f"elements take {count * dtype.itemsize}."
        )
    if dtype.kind == "b":
        return np.frombuffer(chunk, dtype=np.uint8) != 0
    return np.frombuffer(chunk, dtype=dtype).astype(dtype.newbyteorder("="))  # an owned copy


def check_datatype(name: str, datatype: str) -> None:
    if datatype != BYTES and datatype not in DATATYPES:
        raise BadRequest(
            f"input '{name}': unknown datatype {datatype!r}; use one of "
            f"{', '.join([*DATATYPES, BYTES])}."
        )


def _check_count(name: str, shape: tuple[int, ...], found: int) -> None:
    count = math.prod(shape)
    if found != count:
        raise BadRequest(
            f"input '{name}': shape {_shape_text(shape)} needs {count} elements; "
            f"the data holds {found}."
        )


def decode_tensor(
    name: str,
    datatype: str,
    shape: Sequence[int],
    chunk: memoryview | None = None,
    data: object = None,
) -> Tensor:
    """One input from its raw bytes (``chunk``: the binary extension's, or gRPC's raw contents,
    little-endian) or else from its values (JSON ``data``, or gRPC's typed contents)."""
    shape = tuple(shape)
    check_datatype(name, datatype)
    if chunk is not None:
        decoded = _from_binary(chunk, datatype, math.prod(shape), name)
    else:
        decoded = _from_json(data, datatype, shape, name)
    _check_count(name, shape, len(decoded) if isinstance(decoded, list) else decoded.size)
    if isinstance(decoded, np.ndarray):
        decoded = decoded.reshape(shape)
    return Tensor(name, datatype, shape, decoded, binary=chunk is not None)


def bytes_tensor(name: str, shape: Sequence[int], items: list[bytes]) -> Tensor:
    """A BYTES input whose elements came as raw bytes (gRPC's ``bytes_contents``)."""
    _check_count(name, tuple(shape), len(items))
    return Tensor(name, BYTES, tuple(shape), items, binary=True)


def _binary_size(item: InputLike) -> int | None:
    size = item.parameters.get("binary_data_size")
    if size is None:
        return None
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise BadRequest(f"input '{item.name}': binary_data_size must be a non-negative integer.")
    if item.data is not None:
        raise BadRequest(f"input '{item.name}' has both 'data' and binary_data_size; send one.")
    return size


def check_unique_names(names: Sequence[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise BadRequest(f"input '{name}' is given twice.")
        seen.add(name)


def read_inputs(items: Sequence[InputLike], binary: memoryview) -> list[Tensor]:
    """Decode every input, taking each one's binary data from the tail of the body in order."""
    check_unique_names([item.name for item in items])
    offset, tensors = 0, []
    for item in items:
        size = _binary_size(item)
        chunk = None
        if size is not None:
            if offset + size > len(binary):
                raise BadRequest(
                    f"input '{item.name}': binary_data_size {size} runs past the end of the "
                    f"body ({len(binary) - offset} bytes left); the binary data is truncated "
                    "or Inference-Header-Content-Length is missing or wrong."
                )
            chunk = binary[offset : offset + size]
            offset += size
        elif item.data is None:
            raise BadRequest(f"input '{item.name}' has neither 'data' nor binary_data_size.")
        tensors.append(decode_tensor(item.name, item.datatype, item.shape, chunk, item.data))
    if offset != len(binary):
        raise BadRequest(
            f"{len(binary)} bytes of binary data follow the JSON header, but the inputs' "
            f"binary_data_size add up to {offset}."
        )
    return tensors
