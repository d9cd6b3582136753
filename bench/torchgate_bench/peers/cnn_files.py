"""Where the cnn's files are: the one thing the archive (TorchServe) and the peer servers both
need, kept apart from either so that neither imports the other."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CnnFiles:
    """What every peer needs to serve torchgate's cnn: its module, manifest and checkpoint."""

    model_file: Path
    manifest: Path

    @classmethod
    def in_repository(cls, checkpoint_dir: Path) -> CnnFiles:
        import app.nets.cnn

        return cls(Path(app.nets.cnn.__file__).resolve(), (checkpoint_dir / "cnn.json").resolve())
