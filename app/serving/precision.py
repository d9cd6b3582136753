"""The precisions a model can be served in, whether the device can run them, and the
converted copy that serves them.

The float32 module stays the master: reinitialize and reload change it, and the reduced copy is
made from it again afterwards, so a seed gives the same parameters everywhere and a return to
float32 gives back the exact float32 weights. bfloat16 and float16 are a converted copy (inputs
cast to it); ``int8_dynamic`` is ``torch.ao.quantization.quantize_dynamic`` over the Linear and
LSTM layers (weights int8, activations quantized per batch), on the CPU only.
"""

from __future__ import annotations

import copy
import functools
import io
import logging
import warnings

import torch
from torch import nn

from app.errors import BadRequest

logger = logging.getLogger(__name__)

# torch.ao's eager dynamic quantization is deprecated in favour of torchao, which this service
# does not depend on; it still works (torch 2.11 to 2.14). Filtered once, process-wide, like
# graphs.py's TorchScript notices (warnings.catch_warnings is not thread-safe).
warnings.filterwarnings(
    "ignore", message=r"(?s).*torch\.ao\.quantization", category=DeprecationWarning
)
warnings.filterwarnings("ignore", message=r"(?s).*quantized tensor creation", category=UserWarning)

FLOAT32 = "float32"
PRECISIONS = ("float32", "bfloat16", "float16", "int8_dynamic")
CAST_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}
QUANTIZED_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.LSTM)


def _native_cpu(dtype: str) -> bool:
    """Whether the CPU has native instructions for ``dtype`` (AVX512-BF16/AMX, AVX512-FP16):
    without them torch emulates the type, slower than float32, which no operator wants."""
    ops = torch.ops.mkldnn
    probe = "_is_mkldnn_bf16_supported" if dtype == "bfloat16" else "_is_mkldnn_fp16_supported"
    try:
        return bool(getattr(ops, probe)())
    except (AttributeError, RuntimeError):
        return False


@functools.cache
def _runs(device_type: str, index: int | None, dtype: str) -> str | None:
    """A real probe: a matmul and a convolution in ``dtype`` on the device. None if both run,
    else why not."""
    device = torch.device(device_type, index) if index is not None else torch.device(device_type)
    if dtype == "int8_dynamic":
        if device.type != "cpu":
            return "int8_dynamic (torch.ao dynamic quantization) runs on the CPU only"
        engines = [e for e in torch.backends.quantized.supported_engines if e != "none"]
        if not engines:
            return "this torch build has no quantized engine (fbgemm, x86, qnnpack)"
        try:
            layer = torch.ao.quantization.quantize_dynamic(nn.Linear(8, 8), {nn.Linear})
            layer(torch.randn(2, 8))
        except (RuntimeError, NotImplementedError) as exc:
            return f"a dynamically quantized Linear failed here ({exc})"
        return None
    cast = CAST_DTYPES[dtype]
    if device.type == "cuda":
        if dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
            return f"the GPU {torch.cuda.get_device_name(device)} has no bfloat16 support"
    elif device.type == "cpu" and not _native_cpu(dtype):
        return f"this CPU has no native {dtype} instructions (torch would emulate it, slower)"
    try:
        x = torch.randn(4, 3, 8, 8, device=device, dtype=cast)
        torch.nn.functional.conv2d(x, torch.randn(4, 3, 3, 3, device=device, dtype=cast))
        x.flatten(1) @ torch.randn(192, 4, device=device, dtype=cast)
    except (RuntimeError, NotImplementedError) as exc:
        return f"{dtype} matmul/convolution failed on {device} ({exc})"
    return None


def unsupported(device: torch.device, dtype: str) -> str | None:
    """Why ``device`` cannot serve ``dtype`` (None: it can). float32 always runs."""
    if dtype == FLOAT32:
        return None
    return _runs(device.type, device.index, dtype)


def check_precision(module: nn.Module, device: torch.device, dtype: str, name: str) -> None:
    """``BadRequest`` (400 at submit) when the device cannot run ``dtype`` for this model."""
    if dtype not in PRECISIONS:
        raise BadRequest(f"unknown dtype {dtype!r}; use one of {', '.join(PRECISIONS)}.")
    why = unsupported(device, dtype)
    if why is not None:
        raise BadRequest(f"{name} cannot be served in {dtype} on {device}: {why}.")
    if dtype == "int8_dynamic" and not any(
        isinstance(m, QUANTIZED_TYPES) for m in module.modules()
    ):
        raise BadRequest(f"{name} has no Linear or LSTM layer for int8_dynamic to quantize.")


def convert(module: nn.Module, dtype: str, channels_last: bool = False) -> nn.Module:
    """A copy of the float32 ``module`` in ``dtype``, in eval mode, on the module's device."""
    if dtype == "int8_dynamic":
        master = copy.deepcopy(module).cpu().eval()
        return torch.ao.quantization.quantize_dynamic(master, set(QUANTIZED_TYPES))
    converted = copy.deepcopy(module).to(CAST_DTYPES[dtype]).eval()
    if channels_last:  # a 4-D convolution model: oneDNN's reduced-precision kernels want NHWC
        converted = converted.to(memory_format=torch.channels_last)
    return converted


def input_dtype(dtype: str) -> torch.dtype:
    """What float inputs are cast to before the forward (int8_dynamic takes float32)."""
    return CAST_DTYPES.get(dtype, torch.float32)


def run_converted(
    converted: nn.Module,
    columns: list[torch.Tensor],
    dtype: str,
    channels_last: bool,
    softmax: bool,
) -> torch.Tensor:
    """The promoted precision's copy, eager: float inputs cast to its dtype (labels stay
    integers), outputs back to float32 for the softmax and the answer."""
    cast = input_dtype(dtype)
    columns = [c.to(cast) if c.is_floating_point() and c.dtype != cast else c for c in columns]
    first = columns[0]
    if channels_last and first.dim() == 4:
        columns[0] = first.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        result = converted(*columns).float()
        if softmax:
            result = result.softmax(dim=1)
    return result


def is_convolutional(module: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d | nn.ConvTranspose2d) for m in module.modules())


def state_bytes(module: nn.Module) -> int:
    """Bytes of the serialized state dict (packed int8 weights counted as stored)."""
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    return buffer.getbuffer().nbytes
