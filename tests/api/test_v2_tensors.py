"""Open Inference Protocol tensor coding, checked against tritonclient's own encoders/decoders."""

import gzip
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from tritonclient.utils import serialize_byte_tensor

from app.api.v2_tensors import (
    decompress,
    read_inputs,
    split_body,
)
from app.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType


@dataclass
class Item:
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] = field(default_factory=dict)
    data: Any = None


def _binary(name: str, array: np.ndarray, datatype: str) -> tuple[Item, bytes]:
    raw = array.tobytes()
    return Item(name, list(array.shape), datatype, {"binary_data_size": len(raw)}), raw


def test_json_data_may_be_flat_or_nested() -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    flat = Item("x", [2, 3], "FP32", data=x.reshape(-1).tolist())
    nested = Item("y", [2, 3], "FP32", data=x.tolist())
    a, b = read_inputs([flat, nested], memoryview(b""))
    for tensor in (a, b):
        assert tensor.data.dtype == np.float32 and tensor.shape == (2, 3)
        np.testing.assert_array_equal(tensor.data, x)
    assert not a.binary


def test_binary_inputs_are_taken_in_order_after_the_json() -> None:
    x = np.random.default_rng(0).normal(size=(2, 4)).astype(np.float32)
    labels = np.array([3, 7], dtype=np.int64)
    first, raw_x = _binary("x", x, "FP32")
    second, raw_labels = _binary("labels", labels, "INT64")
    a, b = read_inputs([first, second], memoryview(raw_x + raw_labels))
    np.testing.assert_array_equal(a.data, x)
    np.testing.assert_array_equal(b.data, labels)
    assert a.binary and a.data.flags.writeable  # an owned copy, safe for torch.from_numpy


def test_bytes_elements_use_tritonclients_length_prefixes() -> None:
    items = np.array([b"\x89PNG\x00 one", b"", b"three"], dtype=np.object_)
    raw = serialize_byte_tensor(items).item()
    (tensor,) = read_inputs(
        [Item("image", [3], "BYTES", {"binary_data_size": len(raw)})], memoryview(raw)
    )
    assert tensor.data == [b"\x89PNG\x00 one", b"", b"three"]


def test_bool_and_integer_json_are_typed() -> None:
    flags, counts = read_inputs(
        [Item("f", [2], "BOOL", data=[True, False]), Item("n", [2], "UINT8", data=[0, 255])],
        memoryview(b""),
    )
    assert flags.data.tolist() == [True, False] and counts.data.dtype == np.uint8


@pytest.mark.parametrize(
    ("item", "binary", "message"),
    [
        (Item("x", [2, 2], "FP32", data=[1, 2, 3]), b"", "needs 4 elements; the data holds 3"),
        (Item("x", [2, 2], "FP32", data=[[1, 2, 3], [4]]), b"", "every row the same length"),
        (Item("x", [4], "FP32", data=[[1, 2], [3, 4]]), b"", "does not match the declared"),
        (Item("x", [2], "FP32", data=["a", "b"]), b"", "must be numbers"),
        (Item("x", [2], "INT8", data=[1.5, 2]), b"", "must be integers"),
        (Item("x", [2], "INT8", data=[1, 300]), b"", "do not fit INT8"),
        (Item("x", [1], "FP8", data=[1]), b"", "unknown datatype"),
        (Item("x", [1], "FP32"), b"", "neither 'data' nor binary_data_size"),
        (Item("x", [2], "FP32", {"binary_data_size": 8}, [1, 2]), b"\0" * 8, "both 'data'"),
        (Item("x", [2], "FP32", {"binary_data_size": 8}), b"\0" * 5, "truncated"),
        (Item("x", [2], "FP32", {"binary_data_size": 6}), b"\0" * 6, "elements take 8"),
        (Item("x", [2], "FP32", {"binary_data_size": "8"}), b"\0" * 8, "non-negative integer"),
        (Item("x", [1], "FP32", data=[1]), b"\0\0", "2 bytes of binary data follow"),
        (Item("x", [1], "BYTES", {"binary_data_size": 6}), b"\5\0\0\0ab", "longer than"),
        (Item("x", [1], "BYTES", data=[1]), b"", "must be strings"),
    ],
)
def test_malformed_tensors_are_400_naming_the_problem(
    item: Item, binary: bytes, message: str
) -> None:
    with pytest.raises(BadRequest, match=message):
        read_inputs([item], memoryview(binary))


def test_duplicate_input_names_are_refused() -> None:
    item = Item("x", [1], "FP32", data=[1.0])
    with pytest.raises(BadRequest, match="given twice"):
        read_inputs([item, item], memoryview(b""))


def test_split_body_uses_the_header_length() -> None:
    header, binary = split_body(b'{"a":1}tail', "7")
    assert header == b'{"a":1}' and bytes(binary) == b"tail"
    assert bytes(split_body(b"{}", None)[1]) == b""
    for bad in ("0", "-1", "12", "seven"):
        with pytest.raises(BadRequest, match="Inference-Header-Content-Length"):
            split_body(b'{"a":1}tail', bad)


def test_compressed_requests_are_inflated_within_the_limit() -> None:
    payload = b'{"inputs": []}' * 10
    assert decompress(gzip.compress(payload), "gzip", 1000) == payload
    assert decompress(zlib.compress(payload), "deflate", 1000) == payload
    assert decompress(payload, None, 1000) == payload
    with pytest.raises(PayloadTooLarge):
        decompress(gzip.compress(b"\0" * 5000), "gzip", 1000)
    with pytest.raises(BadRequest, match="truncated"):
        decompress(gzip.compress(payload)[:-8], "gzip", 1000)
    with pytest.raises(BadRequest, match="cannot be decompressed"):
        decompress(b"not gzip", "gzip", 1000)
    with pytest.raises(UnsupportedMediaType):
        decompress(payload, "br", 1000)
