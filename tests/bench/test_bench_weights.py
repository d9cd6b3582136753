"""Random stand-in weights keep a trained net's activation scale."""

from __future__ import annotations

import torch
from torch import nn

from torchgate_bench.weights import _calibrate_batch_norm


def _deep_net() -> nn.Module:
    """Twelve conv + batch-norm layers: with fresh statistics (mean 0, variance 1) the
    activations grow layer after layer, as in a random resnet101."""
    layers: list[nn.Module] = [nn.Conv2d(3, 8, 3, padding=1)]
    for _ in range(12):
        layers += [nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, bias=False)]
        nn.init.normal_(layers[-1].weight, std=0.5)
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())


def test_batch_norm_statistics_are_measured_so_activations_stay_in_fp16_range() -> None:
    torch.manual_seed(0)
    net = _deep_net().eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        fresh = net(x).abs().max().item()
    _calibrate_batch_norm(net)
    assert not net.training
    with torch.inference_mode():
        calibrated = net(x).abs().max().item()
    assert fresh > 1e4  # beyond what fp16 keeps precise, and growing with depth
    assert calibrated < 100
