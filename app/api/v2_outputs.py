"""Open Inference Protocol answers: outputs as JSON data or in the binary layout behind the
JSON header (what ``binary_data_output`` asks for), and as gRPC's raw output contents."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from app.api.v2_tensors import DATATYPES, LENGTH_PREFIX, OutputTensor


def raw_bytes(output: OutputTensor) -> bytes:
    """An output in the binary layout (the binary extension's, and gRPC's raw contents)."""
    if isinstance(output.data, list):
        encoded = [item.encode() for item in output.data]
        return b"".join(LENGTH_PREFIX.pack(len(item)) + item for item in encoded)
    return output.data.astype(DATATYPES[output.datatype], copy=False).tobytes()


def _json_data(output: OutputTensor) -> object:
    if isinstance(output.data, list):
        return output.data
    return np.ascontiguousarray(output.data).reshape(-1)


def encode_response(
    head: dict[str, Any], outputs: Sequence[tuple[OutputTensor, bool]]
) -> tuple[bytes, int | None]:
    """The body, and the JSON header's length when binary outputs follow it (else None)."""
    entries, chunks = [], []
    for output, binary in outputs:
        entry: dict[str, Any] = {
            "name": output.name,
            "datatype": output.datatype,
            "shape": list(output.shape),
        }
        if binary:
            raw = raw_bytes(output)
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = _json_data(output)
        entries.append(entry)
    header = orjson.dumps({**head, "outputs": entries}, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return header, None
    return b"".join([header, *chunks]), len(header)
