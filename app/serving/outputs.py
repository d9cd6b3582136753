"""What a model runtime gives back: which parameters answered, raw outputs and the heads' results.

Every result names the parameter version that produced it, so a response can say which
weights answered even while a reinitialize or reload swaps them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class ParameterState:
    """Which parameters answer now: a counter bumped by every swap, and their checksum."""

    version: int
    sha256: str


@dataclass(frozen=True)
class Output:
    """One sample's raw model output, and the parameter version of the batch it ran in."""

    tensor: torch.Tensor
    version: int


@dataclass(frozen=True)
class Prediction:
    """One ranked class of a classification head."""

    index: int
    label: str
    probability: float


@dataclass(frozen=True)
class Generation:
    """A generation head's images (uint8, H x W), their class labels and the latents' seed."""

    images: list[np.ndarray]
    labels: list[int]
    seed: int
    version: int
