"""The KServe peer: KServe's Python model server (FastAPI + uvicorn, grpc.aio) serving
torchgate's cnn (and resnet101) over the Open Inference Protocol, REST and gRPC.

Run as a script with KServe's venv (``v2_nets.py`` and ``fashion.py`` sit next to it)::

    /tmp/peers/ksrv/bin/python bench/torchgate_bench/peers/kserve_app.py --http-port 8580 \
        --grpc-port 8581 --model-file app/nets/cnn.py --manifest models/cnn.json \
        [--resnet-weights resnet101-cd907fc2.pth] [--workers 1] [--threads 2]

Each model is one ``kserve.Model`` whose ``predict`` takes input ``input`` FP32 and answers
``probabilities`` FP32, in binary where the request asks for it (REST) or sent raw inputs
(gRPC), as KServe's own examples do. KServe's model server has no batcher (in a cluster that
is a sidecar's job); ``--workers`` N runs N uvicorn processes for REST, gRPC stays in the
first process.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

# KServe's model_server parses sys.argv (with abbreviations) when it is imported: keep this
# script's own options away from it.
_OPTIONS, sys.argv[1:] = sys.argv[1:], []

import numpy as np  # noqa: E402
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # run as a script, in KServe's environment
from fashion import set_threads  # noqa: E402
from v2_nets import INPUT, OUTPUT, load_networks, probabilities  # noqa: E402


class Classifier(Model):
    """One network behind KServe's data plane. With several workers KServe pickles its models
    into spawned processes; the cnn's class is loaded from a file and does not pickle, so each
    process loads the networks itself, as each uvicorn worker of a real deployment would."""

    def __init__(self, name: str, files: tuple[Path, Path, Path | None]) -> None:
        super().__init__(name)
        self.files = files
        self.load()

    def load(self) -> bool:
        self.network = load_networks(*self.files)[self.name]
        self.ready = True
        return True

    def __getstate__(self) -> dict[str, Any]:
        return {key: value for key, value in self.__dict__.items() if key != "network"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.load()

    def predict(
        self,
        payload: InferRequest,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> InferResponse:
        tensor = next(item for item in payload.inputs if item.name == INPUT)
        answer = probabilities(self.network, tensor.as_numpy())
        binary = payload.use_binary_outputs
        output = InferOutput(name=OUTPUT, shape=list(answer.shape), datatype="FP32")
        output.set_data_from_numpy(np.ascontiguousarray(answer), binary_data=binary)
        return InferResponse(
            response_id=payload.id or "",
            model_name=self.name,
            infer_outputs=[output],
            use_binary_outputs=binary,
            requested_outputs=payload.request_outputs,
        )


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http-port", type=int, default=8580)
    parser.add_argument("--grpc-port", type=int, default=8581)
    parser.add_argument("--model-file", type=Path, required=True)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--resnet-weights", type=Path, default=None)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(_OPTIONS)
    if args.threads:
        # uvicorn's workers are spawned processes: they read the thread count from here
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    set_threads(args.threads or None)
    files = (args.model_file, args.manifest, args.resnet_weights)
    names = ["cnn", "resnet101"] if args.resnet_weights else ["cnn"]
    models = [Classifier(name, files) for name in names]
    server = ModelServer(http_port=args.http_port, grpc_port=args.grpc_port, workers=args.workers)
    server.start(models)


if __name__ == "__main__":
    main()
