"""FashionCNN: the shape contract the serving side relies on, and its size budget."""

from __future__ import annotations

import json

import pytest
import torch

from app.nets import FashionCNN
from app.training.artifacts import constructor_kwargs


@pytest.mark.parametrize("n", [1, 7])
def test_maps_normalized_images_to_ten_logits(n: int) -> None:
    model = FashionCNN().eval()
    with torch.inference_mode():
        logits = model(torch.randn(n, 1, 28, 28))
    assert logits.shape == (n, 10)
    assert torch.isfinite(logits).all()


def test_has_fewer_than_a_million_parameters() -> None:
    assert sum(p.numel() for p in FashionCNN().parameters()) < 1_000_000


def test_rebuilds_from_json_kwargs() -> None:
    kwargs = json.loads(json.dumps(constructor_kwargs(FashionCNN, {"hidden": 64})))
    source, rebuilt = FashionCNN(hidden=64), FashionCNN(**kwargs)
    rebuilt.load_state_dict(source.state_dict())
    assert rebuilt.classifier[-1].in_features == 64


def _multiply_adds(model: torch.nn.Module) -> int:
    """Multiply-adds of one 28x28 image through the convolutions and linear layers."""
    total = 0

    def conv(module: torch.nn.Conv2d, _: object, out: torch.Tensor) -> None:
        nonlocal total
        kh, kw = module.kernel_size
        total += out[0].numel() * module.in_channels // module.groups * kh * kw

    def linear(module: torch.nn.Linear, _: object, __: torch.Tensor) -> None:
        nonlocal total
        total += module.in_features * module.out_features

    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.register_forward_hook(conv)
        elif isinstance(module, torch.nn.Linear):
            module.register_forward_hook(linear)
    with torch.inference_mode():
        model.eval()(torch.zeros(1, 1, 28, 28))
    return total


def test_costs_about_five_million_multiply_adds_per_image() -> None:
    # The serving budget (issue 30): a better recipe must not buy accuracy with width.
    assert _multiply_adds(FashionCNN()) == 5_032_704
