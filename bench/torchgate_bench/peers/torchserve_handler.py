"""TorchServe handler for torchgate's cnn, after the peers harness's ``mnist_handler.py``.

Batch-aware (TorchServe hands ``preprocess`` a list of requests, one answer per request) and
fed the raw body (multipart field ``data`` works too). The ``.mar`` carries this file, the
network's own module (``app/nets/cnn.py``), the manifest and the state dict; ``fashion.py``
rebuilds the network from the manifest and loads the weights with ``weights_only=True``.
The model config's ``handler.torch_threads`` sets the worker's intra-op threads.
"""

from __future__ import annotations

import base64
import logging
from pathlib import Path
from typing import Any

import torch
from ts.torch_handler.base_handler import BaseHandler

try:  # inside the .mar: shipped next to this file
    from fashion import FashionModel, set_threads
except ImportError:  # in this repository (tests)
    from torchgate_bench.peers.fashion import FashionModel, set_threads

logger = logging.getLogger(__name__)
MANIFEST = "cnn.json"


def request_body(row: dict[str, Any]) -> bytes:
    """The image bytes of one TorchServe request: raw body (``body``) or multipart ``data``."""
    body = row.get("data") or row.get("body") or row.get("file")
    if isinstance(body, str):  # TorchServe base64-encodes some bodies
        body = base64.b64decode(body)
    if not isinstance(body, bytes | bytearray):
        raise ValueError("send one image as the request body.")
    return bytes(body)


class FashionHandler(BaseHandler):
    def initialize(self, context: Any) -> None:
        """Build the cnn from the archive's files (not BaseHandler's zero-argument class)."""
        self.context = context
        self.model_yaml_config = getattr(context, "model_yaml_config", None) or {}
        threads = (self.model_yaml_config.get("handler") or {}).get("torch_threads")
        self.manifest = context.manifest
        model_dir = Path(context.system_properties["model_dir"])
        model_file = model_dir / self.manifest["model"]["modelFile"]
        self.fashion = FashionModel(model_file, model_dir / MANIFEST)
        self.device = torch.device("cpu")
        self.model = self.fashion.network
        self.initialized = True
        logger.info("torchgate cnn handler: torch threads=%d", set_threads(threads))

    def preprocess(self, data: list[dict[str, Any]]) -> torch.Tensor:
        return torch.stack([self.fashion.preprocess(request_body(row)) for row in data])

    def postprocess(self, data: torch.Tensor) -> list[dict[str, Any]]:
        return self.fashion.postprocess(data)
