"""The registry's load schedule."""

from __future__ import annotations

from collections.abc import Callable

import torch

from app.config import Settings
from app.metrics import Metrics
from app.serving.registry import ModelRegistry


def _registry(settings: Settings) -> ModelRegistry:
    device = torch.device("cpu")
    return ModelRegistry(settings, device, Metrics(device))


def test_slowest_loads_start_first(settings_factory: Callable[..., Settings]) -> None:
    settings = settings_factory(models=("gan", "cnn", "alexnet", "vgg16", "resnet101", "lstm"))
    order = [entry.spec.name for entry in _registry(settings)._load_order()]
    # graphs are traced after readiness: the pretrained ones, largest first
    assert order == ["vgg16", "alexnet", "resnet101", "gan", "cnn", "lstm"]


def test_a_graph_traced_at_load_starts_first(settings_factory: Callable[..., Settings]) -> None:
    models = ("gan", "cnn", "alexnet", "vgg16", "resnet101", "lstm")
    settings = settings_factory(models=models, wait_for_graphs=True)
    order = [entry.spec.name for entry in _registry(settings)._load_order()]
    # resnet101's TorchScript trace then holds up its load: it starts first
    assert order == ["resnet101", "vgg16", "alexnet", "gan", "cnn", "lstm"]


def test_eager_everywhere_keeps_pretrained_first(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(models=("cnn", "alexnet", "resnet101"), graph="eager")
    order = [entry.spec.name for entry in _registry(settings)._load_order()]
    assert order == ["alexnet", "resnet101", "cnn"]
