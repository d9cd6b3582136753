"""The precisions a model can serve in: the device probe (400 at submit), the converted copies
(int8_dynamic really quantizes), and the forward that casts inputs and answers in float32."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from app.errors import BadRequest
from app.nets.cnn import FashionCNN
from app.nets.lstm import RowLSTM
from app.serving import precision
from app.serving.forward import ModelForward
from app.serving.precision import check_precision, convert, state_bytes

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _lstm() -> nn.Module:
    torch.manual_seed(0)
    return RowLSTM().eval()


def _forward(module: nn.Module, device: str = "cpu") -> ModelForward:
    example = lambda n: (torch.randn(n, 28, 28),)  # noqa: E731
    return ModelForward(module.to(device), torch.device(device), True, example)


def test_int8_dynamic_quantizes_the_lstm_and_its_head_and_shrinks_the_state() -> None:
    model = _lstm()
    quantized = convert(model, "int8_dynamic")
    assert isinstance(quantized.lstm, torch.ao.nn.quantized.dynamic.LSTM)
    assert isinstance(quantized.head[1], torch.ao.nn.quantized.dynamic.Linear)
    assert state_bytes(quantized) < state_bytes(model) / 2
    assert isinstance(model.lstm, nn.LSTM)  # the float32 master is untouched
    rows = torch.randn(64, 28, 28)
    with torch.inference_mode():
        agree = (model(rows).argmax(1) == quantized(rows).argmax(1)).float().mean()
    assert agree > 0.8


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_a_cast_copy_holds_the_dtype_and_leaves_the_master_in_float32(dtype: str) -> None:
    model = FashionCNN().eval()
    copy = convert(model, dtype, channels_last=True)
    assert {p.dtype for p in copy.parameters()} == {precision.CAST_DTYPES[dtype]}
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_a_device_without_native_support_is_refused_at_submit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    precision._runs.cache_clear()
    monkeypatch.setattr(precision, "_native_cpu", lambda dtype: False)
    cpu = torch.device("cpu")
    for dtype in ("bfloat16", "float16"):
        with pytest.raises(BadRequest, match=f"no native {dtype} instructions"):
            check_precision(FashionCNN(), cpu, dtype, "cnn")
    check_precision(FashionCNN(), cpu, "int8_dynamic", "cnn")  # needs no bf16/fp16 hardware
    check_precision(FashionCNN(), cpu, "float32", "cnn")
    precision._runs.cache_clear()


def test_int8_dynamic_needs_a_linear_or_lstm_layer_and_a_cpu() -> None:
    convolutions_only = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU())
    with pytest.raises(BadRequest, match="no Linear or LSTM layer"):
        check_precision(convolutions_only, torch.device("cpu"), "int8_dynamic", "toy")
    assert "CPU only" in str(precision.unsupported(torch.device("cuda"), "int8_dynamic"))


def test_the_forward_casts_inputs_answers_float32_and_follows_parameter_swaps() -> None:
    model = _lstm()
    forward = _forward(model)
    rows = torch.randn(8, 28, 28)
    float32 = forward.run([rows])
    forward.set_precision("bfloat16")
    reduced = forward.run([rows])
    assert reduced.dtype == torch.float32 and torch.allclose(reduced.sum(1), torch.ones(8))
    assert not torch.equal(reduced, float32)  # it really ran in bfloat16
    assert torch.allclose(reduced, float32, atol=0.05)
    with torch.no_grad():  # a reinitialize or reload changes the master: the copy follows
        for parameter in model.parameters():
            parameter.zero_()
    forward.rebuild()
    assert torch.allclose(forward.run([rows]), torch.full((8, 10), 0.1))
    forward.set_precision("float32")
    assert forward.precision == "float32" and torch.allclose(
        forward.run([rows]), torch.full((8, 10), 0.1)
    )


@cuda
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_cuda_serves_half_precisions(dtype: str) -> None:
    if precision.unsupported(torch.device("cuda"), dtype) is not None:
        pytest.skip(f"this GPU cannot run {dtype}")
    model = _lstm()
    rows = torch.randn(16, 28, 28)
    with torch.inference_mode():
        expected = model(rows).softmax(1)
    forward = _forward(model, "cuda")
    forward.set_precision(dtype)
    got = forward.run([rows])
    assert got.device.type == "cpu" and got.dtype == torch.float32
    assert torch.allclose(got, expected, atol=0.05)
    assert next(forward._reduced.parameters()).dtype == precision.CAST_DTYPES[dtype]
