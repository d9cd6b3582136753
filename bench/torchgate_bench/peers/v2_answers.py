"""Hold every server to one answer for one request before any load: a ratio of throughputs
means something only if each server took the same bytes, answered 200 / OK, and ran the same
model on them (same top class, probabilities within a tolerance).

The answers are fetched with the very bytes the load generators replay (``v2_requests.py``):
over REST with the binary extension's header, over gRPC as the prepared message, unparsed on
the way out. torchgate's v2 REST answer is the reference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import numpy as np

from torchgate_bench.drivers import Driver
from torchgate_bench.load import GRPC_SCHEME, LoadTarget
from torchgate_bench.peers.v2_compare import TORCHGATE, Series
from torchgate_bench.peers.v2_requests import (
    HEADER_LENGTH,
    OCTETS,
    V2Request,
    grpc_probabilities,
    rest_probabilities,
)
from torchgate_bench.protocols import MODEL_INFER

# resnet101 runs as a TorchScript graph in channels_last in torchgate and eagerly in the
# peers, the same sums in another order: 7e-7 apart at most here
TOLERANCE = 1e-5


@dataclass(frozen=True)
class Slot:
    """Where one series' load goes: the request aimed at its server, the driver that loads
    it, and the server's own count of failed calls where the driver cannot see them (gRPC)."""

    target: LoadTarget
    driver: Driver
    failed: Callable[[], int | None] | None = None


def rest_answer(url: str, request: V2Request) -> np.ndarray:
    """POST the request's body; the ``probabilities`` of a 200, else RuntimeError."""
    headers = {"content-type": OCTETS, HEADER_LENGTH: str(request.header_length)}
    response = httpx.post(url, content=request.body, headers=headers, timeout=60)
    if response.status_code != 200:
        raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:300]}")
    length = response.headers.get(HEADER_LENGTH)
    return rest_probabilities(response.content, int(length) if length else None)


def grpc_answer(target: str, request: V2Request) -> np.ndarray:
    """One ModelInfer call with the request's message; its ``probabilities`` when OK."""
    options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
    with grpc.insecure_channel(target, options=options) as channel:
        call = channel.unary_unary(MODEL_INFER)  # bytes in, bytes out: the message as sent
        try:
            message = call(request.message, timeout=60)
        except grpc.RpcError as exc:
            raise RuntimeError(f"gRPC {target} answered {exc.code()}: {exc.details()}") from exc
    return grpc_probabilities(message)


def v1_answer(url: str, image: bytes, content_type: str, classes: int) -> np.ndarray:
    """torchgate's v1 predict of the raw image, every class, as a [1, classes] array."""
    response = httpx.post(
        url,
        params={"top_k": classes},
        content=image,
        headers={"content-type": content_type},
        timeout=60,
    )
    if response.status_code != 200:
        raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:300]}")
    answer = np.zeros((1, classes), dtype=np.float32)
    for entry in response.json()["predictions"][0]:
        answer[0, int(entry["index"])] = float(entry["probability"])
    return answer


def verdict(reference: np.ndarray, answer: np.ndarray, tolerance: float) -> dict[str, Any]:
    """Same shape, same top class, every probability within ``tolerance`` of the reference."""
    if reference.shape != answer.shape:
        return {"match": False, "shape": list(answer.shape), "expected": list(reference.shape)}
    top1 = int(np.argmax(answer[0]))
    max_diff = float(np.max(np.abs(reference - answer)))
    return {
        "match": top1 == int(np.argmax(reference[0])) and max_diff <= tolerance,
        "top1": top1,
        "max_abs_diff": max_diff,
        "tolerance": tolerance,
    }


def judge(
    answers: dict[str, np.ndarray], reference: str, tolerance: float = TOLERANCE
) -> dict[str, dict[str, Any]]:
    """Each answer against ``answers[reference]``; RuntimeError naming those that differ."""
    verdicts = {name: verdict(answers[reference], got, tolerance) for name, got in answers.items()}
    wrong = {name: found for name, found in verdicts.items() if not found["match"]}
    if wrong:
        raise RuntimeError(f"not the same answer as {reference}: {wrong}")
    return verdicts


def check_answers(
    plan: list[Series],
    slots: dict[str, Slot],
    requests: dict[str, V2Request],
    image: bytes,
    content_type: str,
) -> dict[str, dict[str, Any]]:
    """Every series' request sent once to its server, each answer judged against torchgate's
    v2 REST one for the same model (the v1 path: the PNG the cnn's tensor was made from)."""
    verdicts: dict[str, dict[str, Any]] = {}
    for model in dict.fromkeys(series.model for series in plan):  # the cnn first
        request = requests[model]
        ours = Series(model, "v2", TORCHGATE, 0).key
        answers = {ours: rest_answer(slots[ours].target.url, request)}
        classes = answers[ours].shape[-1]
        for series in (s for s in plan if s.model == model and s.key != ours):
            url = slots[series.key].target.url
            if series.protocol == "v1":
                answers[series.key] = v1_answer(url, image, content_type, classes)
            elif series.protocol == "v2":
                answers[series.key] = rest_answer(url, request)
            else:
                answers[series.key] = grpc_answer(url.removeprefix(GRPC_SCHEME), request)
        verdicts.update(judge(answers, ours))
    return verdicts
