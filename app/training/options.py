"""The options every trainer shares, and the command line that reproduces a run."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

__all__ = ["TrainOptions", "resolve_device", "seed_everything"]


@dataclass(frozen=True)
class TrainOptions:
    """What a training run was asked to do; recorded in the manifest.

    ``limit`` caps the number of training images (quick runs and tests); it is part
    of the reproduce command so a limited run is never mistaken for a full one.
    """

    epochs: int
    batch_size: int
    lr: float
    seed: int = 0
    device: str = "auto"
    dataset: str = "fashion-mnist"
    data_dir: Path = Path("data")
    out: Path = Path("models")
    limit: int | None = None
    extra_args: dict[str, str] = field(default_factory=dict)

    def command(self, name: str) -> str:
        """The `python -m app train ...` line that repeats this run."""
        parts = [
            f"python -m app train {name}",
            f"--epochs {self.epochs}",
            f"--batch-size {self.batch_size}",
            f"--lr {self.lr:g}",
            f"--seed {self.seed}",
            f"--dataset {self.dataset}",
        ]
        if self.device != "auto":
            parts.append(f"--device {self.device}")
        if self.limit is not None:
            parts.append(f"--limit {self.limit}")
        parts += [f"--{k} {v}" for k, v in self.extra_args.items()]
        return " ".join(parts)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present, else the CPU; anything else is passed to torch."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"Device {name!r} was requested but CUDA is not available; use cpu.")
    return device


def seed_everything(seed: int) -> None:
    """Seed every RNG a training run touches, so a run is repeatable on one machine."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
