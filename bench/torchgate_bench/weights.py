"""Random stand-ins for the official ImageNet weights, so a bench runs offline.

Throughput does not depend on the parameter values, only on the architecture, so random
weights under the official file name measure exactly what the real ones would, provided the
activations keep a trained net's scale: with freshly initialised batch-norm statistics a
random resnet101's logits reach ~1e5, beyond fp16's range (65504), and fp16 autocast would
serve NaNs. So the statistics are measured on random inputs, as training would have set them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

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
    _calibrate_batch_norm(network)
    partial = path.with_suffix(".partial")
    torch.save(network.state_dict(), partial)
    partial.replace(path)
    return path


def provide_random_weights(models: list[str], weights_dir: Path) -> list[str]:
    """Those of ``models`` that will serve random weights: written here where the file is
    missing (and kept in ``weights_dir`` for the next run), or found there from an earlier
    run (their sha256 does not match the official prefix)."""
    from app.errors import WeightsUnavailable
    from app.serving.weights import pretrained_filename, verify_hash_prefix
    from app.zoo import SPECS

    randomized = []
    for name in models:
        weights = SPECS[name].pretrained if name in SPECS else None
        if weights is None:
            continue
        path = weights_dir / pretrained_filename(weights)
        if not path.exists():
            write_random_weights(name, weights_dir)
            randomized.append(name)
            continue
        try:
            verify_hash_prefix(path)
        except WeightsUnavailable:
            randomized.append(name)
    return randomized


def _calibrate_batch_norm(network: nn.Module, batches: int = 2, batch_size: int = 8) -> None:
    """Running mean and variance of every batch-norm layer, averaged over random 224x224
    batches (a no-op for nets without batch norm)."""
    import torch
    from torch import nn

    layers = [m for m in network.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not layers:
        return
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # a cumulative average over the batches
    network.train()
    with torch.no_grad():
        for _ in range(batches):
            network(torch.randn(batch_size, 3, 224, 224))
    network.eval()
    for layer in layers:
        layer.momentum = 0.1
