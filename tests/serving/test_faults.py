"""Device faults are told apart from bad inputs by what PyTorch reports."""

import pytest
import torch

from app.serving.faults import DeviceLost, DeviceOutOfMemory, device_fault

ILLEGAL_ACCESS = (
    "CUDA error: an illegal memory access was encountered\n"
    "CUDA kernel errors might be asynchronously reported at some other API call, so the "
    "stacktrace below might be incorrect.\nFor debugging consider passing CUDA_LAUNCH_BLOCKING=1"
)


@pytest.mark.parametrize(
    "error",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"),
        RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"),
        RuntimeError("CUDA error: out of memory"),
        RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 GB"),
    ],
)
def test_allocation_failures_are_transient_faults(error: Exception) -> None:
    fault = device_fault(error)
    assert isinstance(fault, DeviceOutOfMemory)
    assert fault.__traceback__ is None  # a new exception: the original's frames can go


@pytest.mark.parametrize(
    "message",
    [
        ILLEGAL_ACCESS,
        "CUDA error: device-side assert triggered",
        "CUDA error: unspecified launch failure",
        "CUDA driver error: cudaErrorLaunchFailure",
        "CUDA error: misaligned address",
    ],
)
def test_sticky_cuda_errors_mean_the_device_is_lost(message: str) -> None:
    fault = device_fault(RuntimeError(message))
    assert isinstance(fault, DeviceLost)
    assert str(fault) == message.splitlines()[0]  # the sentence, not the debugging advice


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x3 and 4x5)"),
        ValueError("out of memory"),  # only RuntimeErrors come from the device
        KeyError("x"),
    ],
)
def test_other_errors_are_not_device_faults(error: Exception) -> None:
    assert device_fault(error) is None
