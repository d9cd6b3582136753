"""Reinitialize a module's parameters in place with a named scheme, reproducibly by seed.

``default`` calls every submodule's own ``reset_parameters()`` (PyTorch's construction-time
init, BatchNorm statistics included). The other schemes first do that, so biases and norm
layers get their usual values, then draw the chosen distribution: ``normal``/``uniform`` for
every parameter, ``xavier_uniform``/``kaiming_normal`` for the weight matrices and kernels
(tensors of two or more dimensions), which are the only ones those schemes are defined for.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

Scheme = Literal["default", "normal", "uniform", "xavier_uniform", "kaiming_normal"]
SCHEMES: tuple[str, ...] = ("default", "normal", "uniform", "xavier_uniform", "kaiming_normal")
MAX_MAGNITUDE = 1e6  # beyond this no network computes anything useful, and b - a could overflow


@dataclass(frozen=True)
class InitPlan:
    scheme: Scheme = "default"
    mean: float = 0.0
    std: float = 0.01
    a: float = -0.05
    b: float = 0.05
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("mean", "std", "a", "b"):
            value = getattr(self, name)
            if not math.isfinite(value) or abs(value) > MAX_MAGNITUDE:
                raise ValueError(f"{name} must be a finite number within ±{MAX_MAGNITUDE:g}")
        if self.std <= 0:
            raise ValueError("std must be greater than 0")
        if self.a >= self.b:
            raise ValueError("a must be less than b")


def _reset_defaults(module: nn.Module) -> None:
    for submodule in module.modules():
        reset = getattr(submodule, "reset_parameters", None)
        if callable(reset):
            reset()
        reset_stats = getattr(submodule, "reset_running_stats", None)
        if callable(reset_stats):
            reset_stats()


@torch.no_grad()
def reinitialize(module: nn.Module, plan: InitPlan) -> int:
    """Apply ``plan`` in place and return the seed used (a fresh one when none was given)."""
    seed = plan.seed if plan.seed is not None else secrets.randbits(63)
    devices = sorted({p.device.index or 0 for p in module.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices, device_type="cuda"):
        torch.manual_seed(seed)
        _reset_defaults(module)
        for parameter in module.parameters():
            if plan.scheme == "normal":
                parameter.normal_(plan.mean, plan.std)
            elif plan.scheme == "uniform":
                parameter.uniform_(plan.a, plan.b)
            elif plan.scheme == "xavier_uniform" and parameter.dim() >= 2:
                nn.init.xavier_uniform_(parameter)
            elif plan.scheme == "kaiming_normal" and parameter.dim() >= 2:
                nn.init.kaiming_normal_(parameter, nonlinearity="relu")
    return seed
