"""Random stand-ins for the official ImageNet weights, so a bench runs offline.

Throughput does not depend on the parameter values, only on the architecture, so random
weights under the official file name measure exactly what the real ones would.
"""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def needs_pretrained_weights(model: str) -> bool:
    from app.zoo import SPECS

    return SPECS[model].pretrained is not None


def write_random_weights(model: str, directory: Path, seed: int = 0) -> Path:
    """Save a randomly initialised state dict as ``<dir>/<official file name>`` (kept if present).

    The file's name carries the official hash prefix, which these bytes do not match: serve it
    with ``TORCHGATE_VERIFY_WEIGHTS=false``.
    """
    import torch
    import torchvision

    from app.serving.weights import pretrained_filename
    from app.zoo import SPECS

    weights = SPECS[model].pretrained
    if weights is None:
        raise ValueError(f"{model} is trained here, not a pretrained torchvision model")
    path = directory / pretrained_filename(weights)
    if path.exists():
        return path
    directory.mkdir(parents=True, exist_ok=True)
    logger.info("writing random %s weights to %s", model, path)
    torch.manual_seed(seed)
    network = torchvision.models.get_model(model, weights=None)
    partial = path.with_suffix(".partial")
    torch.save(network.state_dict(), partial)
    partial.replace(path)
    return path
