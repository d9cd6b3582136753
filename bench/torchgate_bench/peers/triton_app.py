"""The Triton peer: Triton's C++ HTTP/gRPC front end and dynamic batcher (via PyTriton), the
models in Python, serving torchgate's cnn (and resnet101) over the Open Inference Protocol.

Run as a script with PyTriton's venv (``v2_nets.py`` and ``fashion.py`` sit next to it)::

    /tmp/peers/pyt/bin/python bench/torchgate_bench/peers/triton_app.py --http-port 8480 \
        --grpc-port 8481 --metrics-port 8482 --model-file app/nets/cnn.py \
        --manifest models/cnn.json [--resnet-weights resnet101-cd907fc2.pth] \
        [--instances 1] [--threads 2] [--max-batch 32] [--delay-us 2000]

Each model: input ``input`` FP32 [-1, C, H, W], output ``probabilities`` FP32 [-1, classes],
``--instances`` model instances (each a thread here, sharing the network), Triton's dynamic
batcher up to ``--max-batch`` rows, waiting at most ``--delay-us`` for more.
"""

from __future__ import annotations

import argparse
import os
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # run as a script, in PyTriton's environment
from fashion import set_threads  # noqa: E402
from v2_nets import INPUT, OUTPUT, SHAPES, load_networks, probabilities  # noqa: E402


def _own_libpython_first() -> None:
    """Triton's Python stub links ``libpython3.x.so``; where this interpreter is not the
    system's (a pyenv build), the system's older one would be found first and the model fails
    (``'_thread.RLock' object has no attribute '_recursion_count'``). The stub inherits this
    variable from tritonserver, which inherits it from here."""
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir:
        current = os.environ.get("LD_LIBRARY_PATH")
        os.environ["LD_LIBRARY_PATH"] = f"{libdir}:{current}" if current else libdir


def _infer(network: object) -> Callable[..., dict[str, np.ndarray]]:
    from pytriton.decorators import batch

    @batch
    def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        return {OUTPUT: probabilities(network, inputs[INPUT])}  # type: ignore[arg-type]

    return infer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http-port", type=int, default=8480)
    parser.add_argument("--grpc-port", type=int, default=8481)
    parser.add_argument("--metrics-port", type=int, default=8482)
    parser.add_argument("--model-file", type=Path, required=True)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--resnet-weights", type=Path, default=None)
    parser.add_argument("--instances", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--delay-us", type=int, default=2000)
    parser.add_argument("--workspace", type=Path, default=None)
    args = parser.parse_args()
    _own_libpython_first()
    set_threads(args.threads or None)
    networks = load_networks(args.model_file, args.manifest, args.resnet_weights)

    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    host = "127.0.0.1"
    config = TritonConfig(
        http_address=host,
        http_port=args.http_port,
        grpc_address=host,
        grpc_port=args.grpc_port,
        metrics_address=host,
        metrics_port=args.metrics_port,
    )
    batcher = DynamicBatcher(max_queue_delay_microseconds=args.delay_us)
    with Triton(config=config, workspace=args.workspace) as triton:
        for name, network in networks.items():
            sample, classes = SHAPES[name]
            triton.bind(
                model_name=name,
                infer_func=[_infer(network) for _ in range(args.instances)],
                inputs=[Tensor(name=INPUT, dtype=np.float32, shape=sample)],
                outputs=[Tensor(name=OUTPUT, dtype=np.float32, shape=(classes,))],
                config=ModelConfig(max_batch_size=args.max_batch, batcher=batcher),
                strict=False,
            )
        triton.serve()


if __name__ == "__main__":
    main()
