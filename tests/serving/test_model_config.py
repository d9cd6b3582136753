"""What each model is served with, from the settings and its spec."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
import torch

from app.config import Settings
from app.serving.model_config import graph_choice
from app.zoo import get_spec

CPU = torch.device("cpu")


def _threads(settings: Settings, model: str) -> int | None:
    return graph_choice(settings, get_spec(model), CPU).cpu_threads


def test_every_model_gets_a_thread_budget_small_ones_capped_unless_threads_are_set(
    settings_factory: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    automatic = settings_factory(models=("cnn", "alexnet"))
    assert _threads(automatic, "cnn") == 1
    assert _threads(automatic, "alexnet") == 8
    assert _threads(settings_factory(models=("alexnet",), workers=2), "alexnet") == 4
    assert _threads(settings_factory(models=("cnn",), torch_threads=2), "cnn") == 2
