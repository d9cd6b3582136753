"""From a v2 REST request's bytes to checked tensors, in one function that may run off the loop.

Inflating a compressed body, scanning and parsing a large JSON header and reading its tensors
are CPU work proportional to what a client chose to send (20 KB of gzip can inflate to 20 MiB),
so the route runs them in the model's decode pool whenever the body is compressed or large,
and the event loop (and /healthz) never waits for them.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.api import open_inference as oip
from app.api.payloads import check_json
from app.api.upload_budget import UploadBudget
from app.api.v2_schemas import InferenceRequest, parse_inference_request
from app.api.v2_tensors import Tensor, decompress, read_inputs, split_body
from app.config import Settings
from app.serving.runtime import ModelRuntime


@dataclass(frozen=True)
class ReadRequest:
    """The parsed header, the input tensors, and the bytes taken from the upload budget for the
    inflated body (the route gives them back once it has answered)."""

    parsed: InferenceRequest
    tensors: list[Tensor]
    held_bytes: int


def is_encoded(encoding: str | None) -> bool:
    return encoding is not None and encoding.strip().lower() not in ("", "identity")


def read_request(
    body: bytes,
    encoding: str | None,
    header_length: str | None,
    runtime: ModelRuntime,
    settings: Settings,
    budget: UploadBudget,
) -> ReadRequest:
    """Inflate (the inflated bytes taken from ``budget``), split the JSON header from the
    binary data, check it (what parsing it costs held meanwhile), parse, check the declared
    shapes against the model's inputs and limits, and read the tensors."""
    data = decompress(body, encoding, settings.max_upload_bytes)
    held = len(data) if data is not body else 0
    budget.take(held)
    try:
        header, binary = split_body(data, header_length)
        with budget.holding(check_json(header, settings.max_json_depth)):
            parsed = parse_inference_request(header)
            oip.check_declared(runtime, [item.shape for item in parsed.inputs], settings)
            tensors = read_inputs(parsed.inputs, binary)
    except BaseException:
        budget.give_back(held)
        raise
    return ReadRequest(parsed, tensors, held)
