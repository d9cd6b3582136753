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
