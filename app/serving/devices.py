"""Pick the torch device the models run on, and fail fast when the request cannot be met."""

from __future__ import annotations

import contextlib
import logging

import torch

from app.errors import ConfigurationError

logger = logging.getLogger(__name__)


def resolve_device(requested: str) -> torch.device:
    """``auto`` means CUDA when present, else CPU; an absent CUDA device is a startup error."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigurationError(
                f"TORCHGATE_DEVICE={requested} but CUDA is not available on this host; "
                "use TORCHGATE_DEVICE=cpu or auto, or run on a host with an NVIDIA GPU and driver."
            )
        index = device.index if device.index is not None else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise ConfigurationError(
                f"TORCHGATE_DEVICE={requested} but only {torch.cuda.device_count()} CUDA "
                f"device(s) exist; pick cuda:0 .. cuda:{torch.cuda.device_count() - 1}."
            )
        device = torch.device("cuda", index)
    return device


def configure_backends(device: torch.device) -> None:
    """Let cuDNN pick the fastest kernels for the (fixed) serving shapes."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    logger.info("serving on %s", device)


def configure_threads(torch_threads: int) -> None:
    """Own the thread budget: the forward gets ``torch_threads`` intra-op threads and no
    inter-op pool, so it never competes with the decode pool or other worker processes."""
    torch.set_num_threads(torch_threads)
    with contextlib.suppress(RuntimeError):  # already set or used in this process: keep it
        torch.set_num_interop_threads(1)
    logger.info("torch intra-op threads: %d", torch.get_num_threads())
