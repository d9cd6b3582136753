"""Regenerate the Python modules of inference.proto: ``python -m app.api.grpc.proto.generate``.

grpcio-tools is pinned (pyproject's test extra, ``GRPCIO_TOOLS``): its protoc decides which
protobuf and grpcio runtimes the generated code accepts (at least its own versions, hence the
lower bounds in the dependencies). The modules are committed, so installing torchgate needs no
compiler; tests/api/grpc/test_proto.py fails when they no longer match the .proto.

The message classes are built in a descriptor pool of their own, not protobuf's default one:
Triton's client registers the same ``inference.*`` names there, and one process (a test, the
bench) may load both.
"""

from __future__ import annotations

import sys
from pathlib import Path

GRPCIO_TOOLS = "1.81.1"
PROTO = Path(__file__).with_name("inference.proto")
ROOT = PROTO.parents[4]  # the repository: the .proto's path below it becomes the module path
_DEFAULT_POOL = "DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile("
_OWN_POOL = "DESCRIPTOR = _descriptor_pool.DescriptorPool().AddSerializedFile("


def generate(output_root: Path = ROOT) -> list[Path]:
    """Write inference_pb2.py, .pyi and inference_pb2_grpc.py under ``output_root``."""
    from importlib.metadata import version

    from grpc_tools import protoc  # a development tool: not needed to serve

    if version("grpcio-tools") != GRPCIO_TOOLS:
        raise RuntimeError(f"install grpcio-tools=={GRPCIO_TOOLS} to regenerate (see above)")
    proto = PROTO.relative_to(ROOT)
    status = protoc.main(
        [
            "protoc",
            f"-I{ROOT}",
            f"--python_out={output_root}",
            f"--pyi_out={output_root}",
            f"--grpc_python_out={output_root}",
            str(proto),
        ]
    )
    if status != 0:
        raise RuntimeError(f"protoc failed on {proto} (status {status})")
    folder = output_root / proto.parent
    messages = folder / "inference_pb2.py"
    text = messages.read_text()
    if text.count(_DEFAULT_POOL) != 1:
        raise RuntimeError(f"{messages}: protoc's output changed; update generate.py")
    messages.write_text(text.replace(_DEFAULT_POOL, _OWN_POOL))
    return [messages, folder / "inference_pb2.pyi", folder / "inference_pb2_grpc.py"]


if __name__ == "__main__":
    for path in generate():
        sys.stdout.write(f"{path}\n")
