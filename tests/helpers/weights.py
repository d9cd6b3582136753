"""Weights and checkpoints for tests: random pretrained-network files under their official
names, and the Fashion-MNIST checkpoints copied into a folder of the test's own."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
import torchvision

from app.datasets import class_names
from app.nets.gan import ConditionalGenerator
from app.serving.weights import file_sha256, pretrained_filename
from app.zoo import SPECS
from tests.helpers.repo import REPO_ROOT


def write_random_weights(name: str, directory: Path, seed: int = 0) -> Path:
    """A randomly initialised state dict saved under the official file name (hash won't match)."""
    spec = SPECS[name]
    assert spec.pretrained is not None
    path = directory / pretrained_filename(spec.pretrained)
    if not path.exists():
        torch.manual_seed(seed)
        model = torchvision.models.get_model(name, weights=None)
        torch.save(model.state_dict(), path)
    return path


def fashion_checkpoints(directory: Path) -> Path:
    """cnn, lstm and gan checkpoints: the trained ones in models/, and for the gan, until it is
    trained, a randomly initialised generator with a valid manifest (same serving path)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("cnn", "lstm", "gan"):
        manifest = REPO_ROOT / "models" / f"{name}.json"
        if manifest.is_file():
            checkpoint = json.loads(manifest.read_text())["checkpoint"]
            shutil.copy(manifest, directory)
            shutil.copy(REPO_ROOT / "models" / checkpoint, directory)
    if not (directory / "gan.json").is_file():
        torch.manual_seed(0)
        torch.save(ConditionalGenerator().state_dict(), directory / "gan.pt")
        architecture = {"module": "app.nets.gan", "class": "ConditionalGenerator", "kwargs": {}}
        manifest_data = {
            "name": "gan",
            "architecture": architecture,
            "checkpoint": "gan.pt",
            "sha256": file_sha256(directory / "gan.pt"),
            "classes": class_names("fashion-mnist"),
        }
        (directory / "gan.json").write_text(json.dumps(manifest_data))
    return directory
