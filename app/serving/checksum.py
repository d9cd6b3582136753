"""A sha256 over a module's parameters and buffers, so clients can see a reinitialize or reload."""

from __future__ import annotations

import hashlib

import torch
from torch import nn


def parameters_sha256(module: nn.Module) -> str:
    """Hash names, dtypes, shapes and raw bytes of the state dict, in its (stable) order."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        data = tensor.detach()
        digest.update(f"{name}|{data.dtype}|{tuple(data.shape)}\n".encode())
        if data.numel() == 0:
            continue
        flat = data.to("cpu", copy=False).contiguous().reshape(-1)
        digest.update(flat.view(torch.uint8).numpy())
    return digest.hexdigest()


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
