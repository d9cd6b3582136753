"""The device check's first step: everything the later steps import, in seconds, or why not.

Imports the serve path (``app.main`` and the CLI, uvicorn with httptools and uvloop) and the
tests' (asgi_lifespan), checks each carried wheel's own requirements against the versions that
are imported (the carried folder comes first on sys.path), and that the requested device
exists. Exit status 1 on the first problem, with the list of what is missing.

    python3 tools/device/imports.py [--site /tmp/site] [--device cuda]
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata as metadata
import sys
from pathlib import Path

MODULES = (
    "app.main",
    "app.__main__",
    "torchgate_bench.__main__",  # the bench's steps (bench/, on PYTHONPATH)
    "asgi_lifespan",
    "uvicorn",
    "httptools",
    "uvloop",
    "fastapi",
    "pydantic",
    "opentelemetry.trace",
    "sniffio",
    "typing_extensions",
    "redis",
    "grpc",
    "google.protobuf",
    "PIL",
    "pyspng",
    "grpc_health.v1.health_pb2",
    "grpc_reflection.v1alpha.reflection",
    "pytest",
)


def _import_all() -> list[str]:
    problems = []
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # every failure is reported, not only the first
            problems.append(f"import {name}: {type(exc).__name__}: {exc}")
            continue
        print(f"  {name:20} {getattr(module, '__file__', '')}")
    return problems


def _carried_requirements(site: Path) -> list[str]:
    """Each carried distribution's requirements (markers evaluated here) against the version
    that importlib finds first, which is what the check will import."""
    try:
        from packaging.requirements import Requirement
    except ImportError:
        print("  packaging is not installed: carried requirements not checked")
        return []
    problems = []
    for dist in metadata.distributions(path=[str(site)]):
        for text in dist.requires or ():
            requirement = Requirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue
            try:
                found = metadata.version(requirement.name)
            except metadata.PackageNotFoundError:
                problems.append(f"{dist.metadata['Name']} needs {requirement}: not installed")
                continue
            if not requirement.specifier.contains(found, prereleases=True):
                problems.append(f"{dist.metadata['Name']} needs {requirement}: found {found}")
    return problems


def _device(requested: str) -> list[str]:
    import torch

    print(f"  torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")
    if torch.cuda.is_available():
        print(
            f"  {torch.cuda.get_device_name()}, capability {torch.cuda.get_device_capability()}, "
            f"cuDNN {torch.backends.cudnn.version()}, {torch.cuda.device_count()} device(s)"
        )
    if requested.startswith("cuda") and not torch.cuda.is_available():
        return [f"TORCHGATE_DEVICE={requested} but torch sees no CUDA device"]
    return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--site", type=Path, default=None, help="the carried wheels' folder")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]} at {sys.executable}")
    problems = _import_all()
    if args.site is not None:
        problems += _carried_requirements(args.site)
    versions = ("fastapi", "pydantic", "typing-extensions", "grpcio", "protobuf", "torch")
    for name in versions:
        try:
            print(f"  {name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            problems.append(f"{name}: not installed")
    problems += _device(args.device)
    for problem in problems:
        print(f"MISSING: {problem}")
    print("imports: ok" if not problems else f"imports: {len(problems)} problem(s)")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
