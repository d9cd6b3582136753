"""The same images through each protocol: v1 REST, v2 REST and v2 gRPC (``--protocol``).

Every request is built once, as a file, and replayed unchanged: v1 as configured (``--upload
raw``: the image is the body), v2 REST as a BYTES tensor in the binary tensor data extension,
gRPC as a BYTES tensor in ``raw_input_contents`` (a serialized ModelInferRequest). So all three
decode the same files through the same runtime, and differ only in their protocol's cost.

``--protocol all`` loads ONE server with the three in alternating rounds, so their ratios do not
measure the machine's drift between separate runs.
"""

from __future__ import annotations

import statistics
import struct
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx
import orjson
from prometheus_client.parser import text_string_to_metric_families

from torchgate_bench.drivers import Driver
from torchgate_bench.load import GRPC_SCHEME, LoadPlan, LoadResult, LoadTarget
from torchgate_bench.payload import UploadFile
from torchgate_bench.server import ServerProcess

PROTOCOLS = ("v1", "v2", "grpc")
MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"


def _bytes_tensor(blobs: list[bytes]) -> bytes:
    """BYTES elements as the binary extension and gRPC's raw contents lay them out."""
    return b"".join(struct.pack("<I", len(blob)) + blob for blob in blobs)


def build_requests(
    model: str, upload: UploadFile, v1: LoadTarget, images: int, workdir: Path
) -> dict[str, LoadTarget]:
    """Each protocol's request, without the server's address (``target_for`` adds it)."""
    from app.api.grpc.proto import inference_pb2 as pb

    raw = _bytes_tensor([upload.data] * images)
    entry = {"name": "image", "shape": [images], "datatype": "BYTES"}
    header = orjson.dumps({"inputs": [{**entry, "parameters": {"binary_data_size": len(raw)}}]})
    v2_path = workdir / "v2-body.bin"
    v2_path.write_bytes(header + raw)
    message = pb.ModelInferRequest(model_name=model)
    message.inputs.add(**entry)
    message.raw_input_contents.append(raw)
    grpc_path = workdir / "grpc-message.bin"
    grpc_path.write_bytes(message.SerializeToString())
    return {
        "v1": v1,
        "v2": LoadTarget(
            "",
            "POST",
            v2_path,
            "application/octet-stream",
            images,
            (("Inference-Header-Content-Length", str(len(header))),),
        ),
        "grpc": LoadTarget("", MODEL_INFER, grpc_path, None, images),
    }


def target_for(protocol: str, request: LoadTarget, model: str, server: ServerProcess) -> LoadTarget:
    """``request`` aimed at ``server``: its HTTP route, or its gRPC port."""
    if protocol == "grpc":
        return replace(request, url=f"{GRPC_SCHEME}{server.grpc_target}")
    path = f"/v1/models/{model}/predict" if protocol == "v1" else f"/v2/models/{model}/infer"
    return replace(request, url=f"{server.base_url}{path}")


@dataclass
class ProtocolComparison:
    """Each protocol's slices merged, the server CPU they took, and each round's rates."""

    results: dict[str, LoadResult]
    cpu_s: dict[str, float]
    rounds: list[dict[str, float]] = field(default_factory=list)  # requests/s per protocol

    def ratio(self, protocol: str, baseline: str = "v1") -> float | None:
        """The median over rounds of protocol / baseline requests per second."""
        ratios = [r[protocol] / r[baseline] for r in self.rounds if r.get(baseline)]
        return statistics.median(ratios) if ratios else None

    def cpu_ms_per_request(self, protocol: str) -> float | None:
        requests = self.results[protocol].requests
        return self.cpu_s[protocol] * 1000 / requests if requests else None

    def client_cpu_ms_per_request(self, protocol: str) -> float | None:
        result = self.results[protocol]
        if not result.requests or result.client_cpu_s is None:
            return None
        return result.client_cpu_s * 1000 / result.requests


def failed_calls(server: ServerProcess) -> int:
    """ModelInfer calls the server answered with a status other than OK, so far. CANCELLED
    is the client's doing, not a failure: h2load resets the calls still in flight when its
    time is up (up to one per connection per round), as wrk drops its requests in flight."""
    text = httpx.get(f"{server.base_url}/metrics", timeout=30).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        if family.name != "torchgate_grpc_requests":
            continue
        for sample in family.samples:
            labels = sample.labels
            if sample.name.endswith("_total") and labels.get("method") == "ModelInfer":
                total += sample.value if labels.get("code") not in ("OK", "CANCELLED") else 0
    return int(total)


def alternate(
    targets: dict[str, LoadTarget],
    server: ServerProcess,
    driver: Driver,
    plan: LoadPlan,
    rounds: int,
    merge: Callable[[list[LoadResult]], LoadResult],
) -> ProtocolComparison:
    """``rounds`` rounds of one slice per protocol (plan.duration / rounds each), after a
    warm-up of each; returns every protocol's slices merged with ``merge``."""
    slice_plan = LoadPlan(plan.concurrency, max(1.0, plan.duration_s / rounds))
    if plan.warmup_s > 0:
        for target in targets.values():
            driver(target, LoadPlan(plan.concurrency, plan.warmup_s))
    slices: dict[str, list[LoadResult]] = {protocol: [] for protocol in targets}
    cpu_s = dict.fromkeys(targets, 0.0)
    per_round = []
    for _ in range(rounds):
        rates = {}
        for protocol, target in targets.items():
            grpc = protocol == "grpc"  # HTTP/2 load generators see gRPC failures as HTTP 200s
            failed_before = failed_calls(server) if grpc else 0  # not in the CPU counted
            before = server.cpu_seconds()
            result = driver(target, slice_plan)
            cpu_s[protocol] += server.cpu_seconds() - before
            if grpc:
                failed = failed_calls(server) - failed_before
                result = replace(result, errors=max(result.errors, failed))
            slices[protocol].append(result)
            rates[protocol] = result.requests_per_s
        per_round.append(rates)
    merged = {protocol: merge(results) for protocol, results in slices.items()}
    return ProtocolComparison(merged, cpu_s, per_round)
