"""Package torchgate's cnn as a TorchServe ``.mar`` with ``torch-model-archiver``.

The archive holds the handler, ``fashion.py`` (the shared request path), the network's module
as the model file, the manifest and the state dict; its model config sets the worker's torch
threads, since TorchServe gives a handler no other per-model knob for them.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from torchgate_bench.peers.cnn_files import CnnFiles

HERE = Path(__file__).resolve().parent


def archive_cnn(python: Path, store: Path, files: CnnFiles, threads: int, name: str) -> Path:
    """``store/<name>.mar``, built with the archiver installed next to ``python``."""
    store.mkdir(parents=True, exist_ok=True)
    checkpoint = files.manifest.parent / json.loads(files.manifest.read_text())["checkpoint"]
    config = store / f"{name}.yaml"
    config.write_text(f"handler:\n  torch_threads: {threads}\n")
    command = [
        str(python.parent / "torch-model-archiver"),
        "--model-name",
        name,
        "--version",
        "1.0",
        "--model-file",
        str(files.model_file),
        "--serialized-file",
        str(checkpoint),
        "--handler",
        str(HERE / "torchserve_handler.py"),
        "--extra-files",
        f"{HERE / 'fashion.py'},{files.manifest}",
        "--config-file",
        str(config),
        "--export-path",
        str(store),
        "--force",
    ]
    subprocess.run(command, check=True, capture_output=True, text=True)
    return store / f"{name}.mar"
