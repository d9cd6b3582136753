"""The networks the Open Inference Protocol peers (Triton, KServe) serve, and their one forward.

Both peers run as scripts in venvs of their own, without this package, so this file sits next
to them (as ``fashion.py`` does) and is imported from this folder. It names the tensors as
torchgate's v2 signature does (input ``input``, output ``probabilities``), so one request fits
every server byte for byte: the cnn from this repository's files (through ``fashion.py``, the
same network and checkpoint torchgate loads) and torchvision's resnet101 from the very weights
file torchgate is given.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # run as a script, in a peer's environment
from fashion import FashionModel  # noqa: E402

INPUT, OUTPUT = "input", "probabilities"
# One sample's shape and the class count, per model (the batch dimension comes first).
SHAPES: dict[str, tuple[tuple[int, ...], int]] = {
    "cnn": ((1, 28, 28), 10),
    "resnet101": ((3, 224, 224), 1000),
}


def load_networks(
    model_file: Path, manifest: Path, resnet_weights: Path | None
) -> dict[str, nn.Module]:
    """The cnn, and resnet101 when its weights file is given, in eval mode on the CPU."""
    networks = {"cnn": FashionModel(model_file, manifest).network}
    if resnet_weights is not None:
        import torchvision

        resnet = torchvision.models.resnet101(weights=None)
        state = torch.load(resnet_weights, map_location="cpu", weights_only=True)
        resnet.load_state_dict(state, strict=True)
        networks["resnet101"] = resnet.eval().requires_grad_(False)
    return networks


def probabilities(network: nn.Module, batch: np.ndarray) -> np.ndarray:
    """Softmax over the logits of a float32 batch, as torchgate's ``probabilities`` output."""
    tensor = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
    with torch.inference_mode():
        return torch.softmax(network(tensor).float(), dim=1).numpy()
