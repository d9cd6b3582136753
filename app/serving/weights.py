"""Find, download and verify weights files, and read state dicts without unpickling code.

Pretrained files follow torch hub's layout: ``<weights_dir>/<basename of the official URL>``,
whose name carries a sha256 prefix (``alexnet-owt-7be5be79.pth``). Trained checkpoints live in
the checkpoint dir next to a JSON manifest that records their full sha256.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torchvision.models import WeightsEnum

from app.errors import WeightsUnavailable

logger = logging.getLogger(__name__)

HASH_PREFIX = re.compile(r"-([a-f0-9]*)\.")  # torch.hub's own convention
_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def pretrained_filename(weights: WeightsEnum) -> str:
    return Path(urlparse(weights.url).path).name


def expected_hash_prefix(filename: str) -> str | None:
    match = HASH_PREFIX.search(filename)
    return match.group(1) if match else None


def verify_hash_prefix(path: Path) -> None:
    """Check the file's sha256 starts with the prefix in its name, as torch.hub does."""
    prefix = expected_hash_prefix(path.name)
    if not prefix:
        return
    actual = file_sha256(path)
    if not actual.startswith(prefix):
        raise WeightsUnavailable(
            f"{path.name} in {path.parent} failed its integrity check: its sha256 starts "
            f"with {actual[: len(prefix)]}, the file name promises {prefix}. Delete it and "
            "download it again (python -m app weights download), or set "
            "TORCHGATE_VERIFY_WEIGHTS=false for weights you trust."
        )


def download_pretrained(weights: WeightsEnum, directory: Path, verify: bool) -> Path:
    """Fetch the official file into ``directory`` with a progress bar; partial files never land."""
    directory.mkdir(parents=True, exist_ok=True)
    filename = pretrained_filename(weights)
    destination = directory / filename
    prefix = expected_hash_prefix(filename) if verify else None
    logger.info("downloading %s to %s", weights.url, destination)
    torch.hub.download_url_to_file(weights.url, str(destination), hash_prefix=prefix, progress=True)
    return destination


def ensure_pretrained_file(
    weights: WeightsEnum, directory: Path, download: bool, verify: bool
) -> Path:
    """The verified local file for ``weights``: downloaded if allowed, else a reason to act on."""
    filename = pretrained_filename(weights)
    path = directory / filename
    if path.is_file():
        if verify:
            verify_hash_prefix(path)
        return path
    where = f"Put {filename} (from {weights.url}) into {directory}"
    if not download:
        raise WeightsUnavailable(
            f"pretrained weights file {filename} is not in {directory} and downloads are off "
            f"(TORCHGATE_DOWNLOAD_WEIGHTS=false). {where}, or run "
            "`python -m app weights download` on a connected host."
        )
    try:
        return download_pretrained(weights, directory, verify)
    except Exception as exc:  # network errors come in many types (URLError, OSError, ...)
        raise WeightsUnavailable(
            f"pretrained weights file {filename} is not in {directory} and downloading it "
            f"failed ({exc}). {where}, or set TORCHGATE_WEIGHTS_DIR to a folder that has it."
        ) from exc


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """Read a state dict with ``weights_only=True`` (no code runs).

    Not memory-mapped on purpose: serving from a mapping of the file would crash the process
    (SIGBUS) the moment someone rewrites the file in place; ``load_state_dict(assign=True)``
    already avoids a second copy.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only refusals, truncated zips, I/O errors, ...
        raise WeightsUnavailable(f"{path.name} in {path.parent} cannot be read: {exc}") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsUnavailable(f"{path.name} in {path.parent} is not a state dict of tensors.")
    return state


def read_manifest(directory: Path, name: str) -> dict[str, Any]:
    path = directory / f"{name}.json"
    if not path.is_file():
        raise WeightsUnavailable(
            f"manifest {path.name} is missing from {directory}; train the model with "
            f"`python -m app train {name}` or point TORCHGATE_CHECKPOINT_DIR at the models folder."
        )
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise WeightsUnavailable(f"manifest {path} cannot be read: {exc}") from exc
    if not isinstance(manifest, dict) or "checkpoint" not in manifest or "sha256" not in manifest:
        raise WeightsUnavailable(f"manifest {path} lacks 'checkpoint' or 'sha256'.")
    return manifest


def verified_checkpoint(directory: Path, manifest: dict[str, Any]) -> Path:
    """The checkpoint named by the manifest, after checking its full sha256."""
    path = directory / Path(str(manifest["checkpoint"])).name
    if not path.is_file():
        raise WeightsUnavailable(
            f"checkpoint {path.name} is missing from {directory}; restore it from the repository "
            f"or retrain with: {manifest.get('command', 'python -m app train')}"
        )
    actual = file_sha256(path)
    if actual != manifest["sha256"]:
        raise WeightsUnavailable(
            f"checkpoint {path.name} in {directory} is corrupt or was replaced: "
            f"sha256 {actual[:12]}… "
            f"does not match the manifest's {str(manifest['sha256'])[:12]}…; restore or retrain it."
        )
    return path
