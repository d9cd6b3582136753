import base64

import numpy as np
import pytest

from app.api.payloads import decode_base64_images, float_array, parse_json_object
from app.errors import BadRequest, InvalidInput


def test_json_object_parsing() -> None:
    assert parse_json_object(b'{"a": [1, 2]}') == {"a": [1, 2]}
    for body, message in [
        (b"", "empty"),
        (b"{", "not valid JSON"),
        (b"[1]", "object"),
        (b'{"x": NaN}', "not valid JSON"),
    ]:
        with pytest.raises(BadRequest, match=message):
            parse_json_object(body)


def test_deeply_nested_json_is_refused_not_crashing() -> None:
    with pytest.raises(BadRequest):
        parse_json_object(b"[" * 100_000 + b"]" * 100_000)


def test_float_array_accepts_rectangular_numbers() -> None:
    array = float_array([[1, 2.5], [3, 4]])
    assert array.dtype == np.float32 and array.shape == (2, 2)


@pytest.mark.parametrize("value", [[[1, 2], [3]], [["a", "b"]], [[1, None]], [], 5, [{"x": 1}]])
def test_float_array_refuses_ragged_or_non_numeric(value: object) -> None:
    with pytest.raises(InvalidInput):
        float_array(value)


def test_base64_images_decode_strictly() -> None:
    encoded = base64.b64encode(b"\x89PNG data").decode()
    assert decode_base64_images([encoded, "data:image/png;base64," + encoded], 4) == [
        b"\x89PNG data",
        b"\x89PNG data",
    ]
    with pytest.raises(BadRequest, match="base64"):
        decode_base64_images(["not base64!"], 4)
    with pytest.raises(BadRequest, match="string"):
        decode_base64_images([3], 4)
    with pytest.raises(InvalidInput, match="limit is 1"):
        decode_base64_images([encoded, encoded], 1)


def test_json_depth_counts_brackets_outside_strings() -> None:
    from app.api.payloads import check_json

    check_json(b'{"inputs": [[[[1.0]]]], "note": "[[[[[[[[[[[[[["}', max_depth=6)
    with pytest.raises(BadRequest, match="deeper than 6"):
        check_json(b'{"a": [[[[[[1]]]]]]}', max_depth=6)
    check_json(b'{"a": "\\"[[[[[[[[[[", "b": [1]}', max_depth=6)


def _reference_depth(text: str) -> int:
    """The nesting depth, walked character by character (strings and escapes understood)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            escaped, in_string = (False, True) if escaped else (char == "\\", char != '"')
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def test_the_vectorized_depth_agrees_with_a_walk_on_json_texts() -> None:
    """On texts whose backslashes are inside strings (every valid JSON), the numpy scan gives
    the walk's answer, escaped quotes and brackets in strings included."""
    from app.api.payloads import json_depth

    rng = np.random.default_rng(0)
    pieces = ["[", "]", "{", "}", ",", "1", ":", '"a"', '"\\""', '"[["', '"\\\\"', '"]}\\"{"']
    for _ in range(2000):
        text = "".join(pieces[i] for i in rng.integers(0, len(pieces), rng.integers(0, 40)))
        assert json_depth(text.encode()) == _reference_depth(text), text


def test_bodies_made_of_empty_arrays_are_refused_and_parsing_has_a_price() -> None:
    from app.api.payloads import PARSED_VALUE_BYTES, check_json

    with pytest.raises(BadRequest, match="arrays and objects"):
        check_json(b'{"inputs": [' + b"[]," * 100_000 + b"[]]}", max_depth=32)
    rows = b"[" + b",".join(b"[" + b",".join([b"0.5"] * 28) + b"]" for _ in range(5000)) + b"]"
    cost = check_json(b'{"inputs": [' + rows + b"]}", max_depth=32)  # 5,000 real rows pass
    assert cost == (5000 * 27 + 4999 + 5003 + 1) * PARSED_VALUE_BYTES


def test_tensor_element_limit() -> None:
    from app.api.payloads import check_tensor_elements
    from app.errors import PayloadTooLarge

    check_tensor_elements(100, 100)
    with pytest.raises(PayloadTooLarge, match="101 elements"):
        check_tensor_elements(101, 100)
