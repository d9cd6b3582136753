"""What each peer needs before it can start, and which versions of it a run measured.

TorchServe and LitServe run in a venv of their own (``--peers-python``); the plain FastAPI
peer runs in this project's environment. The Open Inference Protocol peers, Triton (through
PyTriton) and KServe, each run in a venv of their own (``--triton-python``,
``--kserve-python``), since their pins (numpy, grpcio) do not agree.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

PEERS = ("torchserve", "litserve", "fastapi")
V2_PEERS = ("triton", "kserve")
DEFAULT_PEERS_PYTHON = Path("/tmp/peers/venv/bin/python")
DEFAULT_V2_PYTHON = {
    "triton": Path("/tmp/peers/pyt/bin/python"),
    "kserve": Path("/tmp/peers/ksrv/bin/python"),
}
PACKAGES = {
    "torchserve": ("torchserve", "torch-model-archiver", "torch"),
    "litserve": ("litserve", "torch"),
    "fastapi": ("fastapi", "uvicorn"),
    "triton": ("nvidia-pytriton", "torch"),
    "kserve": ("kserve", "torch"),
}
# The set-up of each v2 peer's venv, as ../shared/peers/v2/README.md gives it.
V2_SETUP = {
    "triton": "python3 -m venv /tmp/peers/pyt && /tmp/peers/pyt/bin/pip install nvidia-pytriton "
    "torch==2.14.1 torchvision==0.29.1 pillow",
    "kserve": "python3 -m venv /tmp/peers/ksrv && /tmp/peers/ksrv/bin/pip install kserve==0.21.0 "
    "torch==2.14.1 torchvision==0.29.1 pillow",
}
_VERSIONS = """
import json, sys
from importlib import metadata
found = {}
for name in sys.argv[1:]:
    try:
        found[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
        found[name] = None
print(json.dumps(found))
"""


def missing_requirement(peer: str, python: Path) -> str | None:
    """What stops ``peer`` from starting here, as a sentence that says how to fix it."""
    if peer not in PEERS:
        return f"unknown peer {peer!r}; choose one of {', '.join(PEERS)}."
    if peer == "fastapi":
        return None  # this project's own environment
    install = (
        f"{peer} runs in its own venv, and {python} is missing: python3 -m venv /tmp/peers/venv "
        "&& /tmp/peers/venv/bin/pip install torch==2.14.1 torchvision==0.29.1 torchserve "
        "torch-model-archiver litserve captum python-multipart (or pass --peers-python)."
    )
    if not python.exists():
        return install
    if peer == "torchserve" and shutil.which("java") is None:
        return "TorchServe needs Java 17: apt-get install -y openjdk-17-jre-headless."
    return None


def missing_v2_requirement(peer: str, python: Path) -> str | None:
    """What stops an Open Inference Protocol peer from starting, naming its set-up command."""
    if peer not in V2_PEERS:
        return f"unknown peer {peer!r}; choose one of {', '.join(V2_PEERS)}."
    if python.exists():
        return None
    option = f"--{peer}-python"
    return f"{peer} runs in its own venv, and {python} is missing: {V2_SETUP[peer]} (or {option})."


def peer_versions(peer: str, python: Path) -> dict[str, str | None]:
    """The peer's packages as its own interpreter sees them; its torch is named after it
    (``torch (torchserve)``), since it may differ from the one torchgate runs."""
    packages = PACKAGES.get(peer, ())
    interpreter = sys.executable if peer == "fastapi" else str(python)
    try:
        completed = subprocess.run(
            [interpreter, "-c", _VERSIONS, *packages],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        found: dict[str, str | None] = json.loads(completed.stdout)
    except (OSError, subprocess.SubprocessError, ValueError):
        found = dict.fromkeys(packages)
    return {(f"torch ({peer})" if name == "torch" else name): found.get(name) for name in packages}
