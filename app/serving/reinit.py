"""Reinitialize a module's parameters in place with a named scheme, reproducibly by seed.

``default`` calls every submodule's own ``reset_parameters()`` (PyTorch's construction-time
init, BatchNorm statistics included). The other schemes first do that, so biases and norm
layers get their usual values, then draw the chosen distribution: ``normal``/``uniform`` for
every parameter, ``xavier_uniform``/``kaiming_normal`` for the weight matrices and kernels
(tensors of two or more dimensions), which are the only ones those schemes are defined for.

Determinism is a contract: every process of a service applies the same seeded record, so the
same seed must give byte-identical parameters on any device and in any memory layout. All
draws happen on the CPU, into contiguous tensors, from generators seeded here, and the
results are then copied into the live (CUDA, channels_last) tensors.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain
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


@contextmanager
def _drawn_on_cpu(module: nn.Module) -> Iterator[None]:
    """Swap every parameter and buffer for a contiguous CPU copy, then copy the result back
    into the original tensors (device, layout and identity kept for the serving graph)."""
    tensors = list(chain(module.parameters(), module.buffers()))
    originals = [tensor.data for tensor in tensors]
    for tensor, original in zip(tensors, originals, strict=True):
        tensor.data = original.to("cpu", copy=True, memory_format=torch.contiguous_format)
    try:
        yield
    finally:
        for tensor, original in zip(tensors, originals, strict=True):
            original.copy_(tensor.data)
            tensor.data = original


@torch.no_grad()
def reinitialize(module: nn.Module, plan: InitPlan) -> int:
    """Apply ``plan`` in place and return the seed used (a fresh one when none was given)."""
    seed = plan.seed if plan.seed is not None else secrets.randbits(63)
    with _drawn_on_cpu(module):
        # reset_parameters() takes no generator: seed the CPU default one, and only it, for
        # the duration (fork_rng restores it; CUDA generators are never touched).
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(seed)
            _reset_defaults(module)
        generator = torch.Generator().manual_seed(seed)
        for parameter in module.parameters():
            if plan.scheme == "normal":
                parameter.normal_(plan.mean, plan.std, generator=generator)
            elif plan.scheme == "uniform":
                parameter.uniform_(plan.a, plan.b, generator=generator)
            elif plan.scheme == "xavier_uniform" and parameter.dim() >= 2:
                nn.init.xavier_uniform_(parameter, generator=generator)
            elif plan.scheme == "kaiming_normal" and parameter.dim() >= 2:
                nn.init.kaiming_normal_(parameter, nonlinearity="relu", generator=generator)
    return seed
