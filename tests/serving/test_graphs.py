"""Serving graphs agree with eager (the reference) or fall back to it."""

import pytest
import torch
from torch import nn

from app.serving import graphs
from app.serving.graphs import MAX_PROBABILITY_DIFF, build_graph
from app.serving.loading import WeightsLocation, load_model
from app.zoo import SPECS
from tests.helpers.repo import REPO_ROOT

CPU = torch.device("cpu")


def _convnet() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 10),
    ).eval()


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("mode", ["eager", "script", "script-onednn"])
def test_graph_matches_eager(mode: str, channels_last: bool) -> None:
    reference = _convnet()
    x = torch.randn(4, 1, 28, 28)
    with torch.inference_mode():
        expected = reference(x).softmax(1)
    graph = build_graph(_convnet(), mode, channels_last, (x[:1],), classifier=True)
    assert graph.mode == mode and graph.channels_last == channels_last
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        got = graph.forward(x).softmax(1)
    assert (got - expected).abs().max().item() <= MAX_PROBABILITY_DIFF


def test_a_graph_that_fails_to_build_falls_back_to_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(module, example, onednn=False):  # type: ignore[no-untyped-def]
        raise RuntimeError("unsupported op")

    monkeypatch.setattr(graphs, "_trace_and_freeze", broken)
    module = _convnet()
    graph = build_graph(module, "script", False, (torch.randn(1, 1, 28, 28),), classifier=True)
    assert graph.mode == "eager" and graph.forward is module


def test_a_graph_that_disagrees_falls_back_to_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        graphs, "_trace_and_freeze", lambda m, e, onednn=False: lambda x: m(x) * 50 + 3
    )
    module = _convnet()
    graph = build_graph(module, "script", False, (torch.randn(2, 1, 28, 28),), classifier=True)
    assert graph.mode == "eager"


def test_aot_starts_as_eager_until_its_package_is_swapped_in() -> None:
    module = _convnet()
    graph = build_graph(module, "aot", True, (torch.randn(1, 1, 28, 28),), classifier=True)
    assert graph.mode == "eager" and graph.forward is module and graph.channels_last


def test_the_served_cnn_on_onednn_matches_eager_at_every_batch_size() -> None:
    """The cnn's CPU default: batch norm folded into oneDNN convolutions with packed weights,
    equal to eager (the reference) within 1e-4 at any batch size, not only the traced one."""
    where = WeightsLocation(REPO_ROOT / "models", REPO_ROOT / "models", False, False)
    module, reference = (load_model(SPECS["cnn"], where, CPU).module for _ in range(2))
    graph = build_graph(module, "script-onednn", True, (torch.randn(1, 1, 28, 28),), True)
    assert graph.mode == "script-onednn"
    assert "mkldnn_convolution" in str(graph.forward.graph)  # type: ignore[attr-defined]
    torch.manual_seed(1)
    for batch in (1, 3, 16, 40):
        x = torch.randn(batch, 1, 28, 28)
        with torch.inference_mode():
            expected = reference(x).softmax(1)
            got = graph.forward(x.contiguous(memory_format=torch.channels_last)).softmax(1)
        assert (got - expected).abs().max().item() <= MAX_PROBABILITY_DIFF
