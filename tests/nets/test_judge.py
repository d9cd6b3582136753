"""The GAN's judge: a classifier of another make than the served cnn, with features to compare."""

from __future__ import annotations

import torch

from app.nets import FashionCNN, ResNetJudge


def test_maps_images_to_logits_through_its_pooled_features() -> None:
    model = ResNetJudge().eval()
    x = torch.randn(3, 1, 28, 28)
    with torch.inference_mode():
        features, logits = model.features(x), model(x)
        assert torch.allclose(model.head(features), logits)
    assert features.shape == (3, 96) and logits.shape == (3, 10)


def test_is_built_unlike_the_served_cnn() -> None:
    judge, cnn = ResNetJudge(), FashionCNN()
    kinds = {type(m) for m in judge.modules()}
    assert torch.nn.MaxPool2d in {type(m) for m in cnn.modules()} - kinds
    assert torch.nn.AdaptiveAvgPool2d in kinds - {type(m) for m in cnn.modules()}
