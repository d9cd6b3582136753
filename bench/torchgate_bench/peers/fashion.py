"""The cnn's request path for the peer servers, self-contained: torch, numpy and PIL only.

TorchServe's worker, LitServe and the plain FastAPI peer run in an environment without this
package, so this file is shipped next to them (into the ``.mar``, or run from this folder) and
repeats what torchgate does for the cnn: ``FashionInput`` (28x28 greyscale, bilinear resize,
the manifest's mean/std), the manifest's architecture and labels, a softmax over the logits.
``tests/bench/test_peers.py`` holds the two to the same numbers.
"""

from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

SIDE = 28


class FashionModel:
    """The cnn as the manifest describes it: network, weights, normalization and labels."""

    def __init__(self, model_file: Path, manifest_file: Path) -> None:
        manifest = json.loads(manifest_file.read_text())
        checkpoint = manifest_file.parent / manifest["checkpoint"]
        architecture = manifest["architecture"]
        spec = importlib.util.spec_from_file_location("peer_fashion_net", model_file)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        network = getattr(module, architecture["class"])(**architecture.get("kwargs", {}))
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        network.load_state_dict(state, strict=True)
        self.network = network.eval().requires_grad_(False)
        normalization = manifest.get("normalization") or {}
        self.mean = float(normalization.get("mean", 0.5))
        self.std = float(normalization.get("std", 0.5))
        self.labels: list[str] = [str(label) for label in manifest["classes"]]

    def preprocess(self, data: bytes) -> torch.Tensor:
        """Image bytes -> normalized [1, 28, 28], as torchgate's ``FashionInput`` does it."""
        image = Image.open(io.BytesIO(data))
        image.seek(0)
        image.load()
        if image.mode == "P" and "transparency" in image.info:
            image = image.convert("RGBA")
        image = image if image.mode == "L" else image.convert("L")
        if image.size != (SIDE, SIDE):
            image = image.resize((SIDE, SIDE), Image.Resampling.BILINEAR)
        pixels = np.array(image, dtype=np.float32)
        pixels *= 1.0 / (255.0 * self.std)
        pixels -= self.mean / self.std
        return torch.from_numpy(pixels[np.newaxis])

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """Logits [N, classes] for a batch [N, 1, 28, 28]."""
        with torch.inference_mode():
            return self.network(batch)

    def postprocess(self, logits: torch.Tensor) -> list[dict[str, Any]]:
        """One answer per row: the top-1 label and index, and every class's probability."""
        probabilities = torch.softmax(logits.float(), dim=1)
        answers = []
        for row in probabilities.tolist():
            index = int(np.argmax(row))
            answers.append({"index": index, "label": self.labels[index], "probabilities": row})
        return answers

    def predict(self, bodies: list[bytes]) -> list[dict[str, Any]]:
        """The whole path for a batch of request bodies."""
        batch = torch.stack([self.preprocess(body) for body in bodies])
        return self.postprocess(self.forward(batch))


def set_threads(threads: int | None) -> int:
    """Apply a peer's intra-op thread count (workers x threads ~ cores); the count in effect."""
    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()
