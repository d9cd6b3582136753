"""Rehearse the carried wheels against a stand-in for the GPU machine's image, here.

The stand-in is this interpreter started without its site-packages (``python -S``), seeing
only the packages the image is known to hold (linked from this environment) and the wheels
that tools/device/wheels.sh downloads for this Python version. In it, the device check's
import step and its tests run: a wheel missing from wheels.sh fails here, in a minute, instead
of on the GPU machine. Run it after adding a dependency to the serve or test path.

    python tools/device/image_check.py
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import re
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Of the GPU image's Python packages (the lending workplace's list), those this project's
# environment also holds: what the check may take from the image rather than carry.
IMAGE = [
    "aiohappyeyeballs",
    "aiohttp",
    "aiosignal",
    "attrs",
    "charset-normalizer",
    "contourpy",
    "cuda-bindings",
    "cuda-pathfinder",
    "cuda-toolkit",
    "cycler",
    "filelock",
    "fonttools",
    "frozenlist",
    "fsspec",
    "hypothesis",
    "iniconfig",
    "jinja2",
    "kiwisolver",
    "markupsafe",
    "matplotlib",
    "ml-dtypes",
    "mpmath",
    "multidict",
    "networkx",
    "numpy",
    "nvidia-cublas",
    "nvidia-cuda-cupti",
    "nvidia-cuda-nvrtc",
    "nvidia-cuda-runtime",
    "nvidia-cudnn-cu13",
    "nvidia-cufft",
    "nvidia-cufile",
    "nvidia-curand",
    "nvidia-cusolver",
    "nvidia-cusparse",
    "nvidia-cusparselt-cu13",
    "nvidia-nccl-cu13",
    "nvidia-nvjitlink",
    "nvidia-nvshmem-cu13",
    "nvidia-nvtx",
    "packaging",
    "pillow",
    "pip",
    "pluggy",
    "propcache",
    "pyparsing",
    "pytest",
    "python-dateutil",
    "pyyaml",
    "requests",
    "setuptools",
    "sortedcontainers",
    "sympy",
    "torch",
    "torchvision",
    "triton",
    "urllib3",
    "uvloop",
    "werkzeug",
    "yarl",
]
TESTS = [
    "tests/serving/test_cuda_forward.py",
    "tests/serving/test_cuda_app.py",
    "tests/serving/test_reinit.py",
    "tests/serving/test_forward.py",
    "tests/serving/test_graph_swaps.py",
    "tests/serving/test_batch_shapes.py",
    "tests/serving/test_faults.py",
    "tests/serving/test_device_faults.py",
    "tests/serving/test_batching.py",
    "tests/serving/test_devices.py",
]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _link_image(folder: Path, carried: set[str]) -> None:
    """Link each image package's top-level modules and metadata from this environment."""
    site = Path(sysconfig.get_paths()["purelib"])
    for dist in metadata.distributions(path=[str(site)]):
        name = _norm(dist.metadata["Name"])
        if name not in IMAGE or name in carried:
            continue
        for file in dist.files or ():
            top = file.parts[0]
            if top in ("..", "__pycache__") or top.endswith(".pth"):
                continue
            if (site / top).exists() and not (folder / top).exists():
                (folder / top).symlink_to(site / top)


def main() -> None:
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    with tempfile.TemporaryDirectory(prefix="torchgate-image-") as scratch:
        work = Path(scratch)
        wheels, site, image = work / "wheels", work / "site", work / "image"
        env = {**os.environ, "PYVER": version, "DEST": str(wheels)}
        subprocess.run(["bash", str(ROOT / "tools/device/wheels.sh")], env=env, check=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--no-index",
                "--no-deps",
                "--no-compile",
                "--target",
                str(site),
                *map(str, wheels.glob("*.whl")),
            ],
            check=True,
        )
        image.mkdir()
        _link_image(image, {_norm(w.name.split("-")[0]) for w in wheels.glob("*.whl")})
        env = {**os.environ, "PYTHONPATH": f"{site}:{image}:{ROOT}:{ROOT / 'bench'}"}
        env.pop("TORCHGATE_DEVICE", None)
        stand_in = [sys.executable, "-S"]
        steps = [
            [*stand_in, "tools/device/imports.py", "--site", str(site), "--device", "cpu"],
            [*stand_in, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS],
        ]
        for command in steps:
            if subprocess.run(command, cwd=ROOT, env=env, check=False).returncode != 0:
                sys.exit(f"image check failed: {' '.join(command[2:4])}")
    print("image check: ok")


if __name__ == "__main__":
    main()
