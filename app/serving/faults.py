"""Device faults: tell a failure of the device from a failure of the input.

PyTorch reports most CUDA failures as a plain ``RuntimeError`` (``torch.AcceleratorError`` in
recent releases) whose message names the CUDA, cuDNN or cuBLAS status, so they are told apart
by message. Two kinds matter to serving:

- an allocation failure (the caching allocator's ``torch.OutOfMemoryError``, or a library's
  ``*_STATUS_ALLOC_FAILED``) is transient: a smaller batch, or the same one later, can run;
- a sticky error (an illegal memory access, a device-side assert, a launch failure) leaves the
  process's CUDA context unusable: every later call on the device fails until it restarts.

Anything else is left to the caller (an input the model cannot take is the client's problem).
"""

from __future__ import annotations

import torch

# Substrings of allocation failures: the caching allocator, the libraries' own workspaces
# (cuDNN, cuBLAS, cuFFT, cuSOLVER, cuSPARSE), the driver, and the CPU allocator.
ALLOCATION_FAILURES = (
    "out of memory",
    "CUDNN_STATUS_ALLOC_FAILED",
    "CUBLAS_STATUS_ALLOC_FAILED",
    "CUFFT_ALLOC_FAILED",
    "CUSOLVER_STATUS_ALLOC_FAILED",
    "CUSPARSE_STATUS_ALLOC_FAILED",
    "cudaErrorMemoryAllocation",
    "CUDA_ERROR_OUT_OF_MEMORY",
    "can't allocate memory",
)
# Substrings of errors after which the CUDA context is lost (CUDA's "sticky" errors, and the
# library failures they surface as when a kernel of theirs hits one).
STICKY_FAILURES = (
    "an illegal memory access was encountered",
    "cudaErrorIllegalAddress",
    "device-side assert triggered",
    "cudaErrorAssert",
    "unspecified launch failure",
    "cudaErrorLaunchFailure",
    "an illegal instruction was encountered",
    "cudaErrorIllegalInstruction",
    "misaligned address",
    "cudaErrorMisalignedAddress",
    "the launch timed out and was terminated",
    "cudaErrorLaunchTimeout",
    "uncorrectable ECC error",
    "cudaErrorECCUncorrectable",
    "hardware stack error",
    "cudaErrorHardwareStackError",
    "CUDA error: unknown error",
    "CUBLAS_STATUS_EXECUTION_FAILED",
    "CUDNN_STATUS_EXECUTION_FAILED",
)
MAX_MESSAGE = 300  # the first line of a CUDA error says what happened; the rest is advice


class DeviceFault(Exception):
    """A failure of the device running a batch, not of the batch's inputs."""


class DeviceOutOfMemory(DeviceFault):
    """An allocation failed: a smaller batch, or the same one later, may run."""


class DeviceLost(DeviceFault):
    """A sticky CUDA error: nothing more can run on the device until the process restarts."""


def _summary(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:MAX_MESSAGE]


def device_fault(exc: BaseException) -> DeviceFault | None:
    """The fault ``exc`` reports (a new exception holding only its message, so that the
    original traceback, and the activations its frames hold, can be freed), or None."""
    if isinstance(exc, DeviceFault):
        return exc
    if isinstance(exc, torch.OutOfMemoryError):
        return DeviceOutOfMemory(_summary(exc))
    if not isinstance(exc, RuntimeError):
        return None
    message = str(exc)
    if any(marker in message for marker in STICKY_FAILURES):
        return DeviceLost(_summary(exc))
    if any(marker in message for marker in ALLOCATION_FAILURES):
        return DeviceOutOfMemory(_summary(exc))
    return None


def device_responds(device: torch.device) -> bool:
    """Whether ``device`` still runs work: after a sticky error every call fails again."""
    try:
        torch.cuda.synchronize(device)
        return torch.ones(1, device=device).add_(1).item() == 2.0
    except RuntimeError:
        return False
