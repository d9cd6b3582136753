"""Open Inference Protocol answers, read back with tritonclient's own decoder."""

import numpy as np
import orjson
from tritonclient.http import InferResult

from app.api.v2_outputs import encode_response
from app.api.v2_tensors import OutputTensor


def test_responses_decode_with_tritonclient() -> None:
    probabilities = np.random.default_rng(1).random((2, 3), dtype=np.float32)
    outputs = [
        (OutputTensor("probabilities", "FP32", (2, 3), probabilities), True),
        (OutputTensor("labels", "BYTES", (2, 1), ["coat", "bag"]), True),
        (OutputTensor("json", "FP32", (2, 3), probabilities), False),
    ]
    body, header_length = encode_response({"model_name": "m", "id": "7"}, outputs)
    assert header_length is not None
    result = InferResult.from_response_body(body, header_length=header_length)
    np.testing.assert_array_equal(result.as_numpy("probabilities"), probabilities)
    assert result.as_numpy("labels").tolist() == [[b"coat"], [b"bag"]]
    np.testing.assert_array_equal(result.as_numpy("json"), probabilities)
    assert result.get_response()["id"] == "7"


def test_json_only_responses_have_no_header_length() -> None:
    body, header_length = encode_response(
        {}, [(OutputTensor("x", "FP32", (1, 2), np.array([[0.5, 0.25]], np.float32)), False)]
    )
    assert header_length is None
    assert orjson.loads(body)["outputs"][0]["data"] == [0.5, 0.25]
