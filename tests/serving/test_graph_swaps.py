"""Serving graphs built in the background and swapped in between batches."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from torch import nn

from app.serving import graph_swaps, graphs
from app.serving.aot_builds import GraphBuilder
from app.serving.forward import ModelForward
from app.serving.graph_swaps import Background
from app.serving.reinit import InitPlan, reinitialize


def _net() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).eval()


def _traced_later(worker: ThreadPoolExecutor, wait: bool = False) -> ModelForward:
    forward = ModelForward(
        _net(), torch.device("cpu"), True, lambda b: (torch.randn(b, 4),), graph_mode="script"
    )
    forward.background = Background(GraphBuilder(), on_worker=worker.submit, wait=wait)
    return forward


def _until_traced(forward: ModelForward, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while forward.graph_pending and time.monotonic() < deadline:
        time.sleep(0.01)


@pytest.fixture
def trace_gate(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Traces wait for this event, so a test sees the model serve before its graph exists."""
    gate = threading.Event()
    real = graphs._trace_and_freeze

    def gated(module: nn.Module, example: tuple[torch.Tensor, ...], onednn: bool) -> object:
        assert gate.wait(30)
        return real(module, example, onednn)

    monkeypatch.setattr(graphs, "_trace_and_freeze", gated)
    return gate


def test_eager_serves_until_the_traced_graph_is_swapped_in(trace_gate: threading.Event) -> None:
    x = torch.randn(6, 4)
    with ThreadPoolExecutor(1) as worker:  # stands in for the registry's forward worker
        forward = _traced_later(worker)
        forward.prepare(4)
        assert forward.graph.mode == "eager" and forward.graph_pending  # ready, not traced
        eager = worker.submit(forward.run, [x]).result()
        trace_gate.set()
        _until_traced(forward)
        assert forward.graph.mode == "script" and not forward.graph_pending
        traced = worker.submit(forward.run, [x]).result()
    with torch.inference_mode():
        expected = forward.module(x).softmax(1)
    assert torch.allclose(eager, expected, atol=1e-6)
    assert torch.allclose(traced, expected, atol=1e-6)


def test_a_swap_serves_the_new_weights_at_once_and_retraces() -> None:
    x = torch.randn(3, 4)
    with ThreadPoolExecutor(1) as worker:
        forward = _traced_later(worker)
        forward.prepare(4)
        _until_traced(forward)
        assert forward.graph.mode == "script"
        before = worker.submit(forward.run, [x]).result()

        def swap() -> str:  # what ModelRuntime._swap does on the worker
            reinitialize(forward.module, InitPlan(seed=5))
            forward.rebuild()
            return forward.graph.mode

        assert worker.submit(swap).result() == "eager"  # the frozen graph holds old weights
        after = worker.submit(forward.run, [x]).result()
        _until_traced(forward)
        assert forward.graph.mode == "script"
        retraced = worker.submit(forward.run, [x]).result()
    with torch.inference_mode():
        expected = forward.module(x).softmax(1)
    assert not torch.allclose(before, after)
    assert torch.allclose(after, expected, atol=1e-6)
    assert torch.allclose(retraced, expected, atol=1e-6)


def test_a_trace_for_replaced_weights_is_never_swapped_in(
    trace_gate: threading.Event, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger=graph_swaps.__name__)
    with ThreadPoolExecutor(1) as worker:
        forward = _traced_later(worker)
        forward.prepare(4)  # the first weights' trace starts, and waits at the gate
        worker.submit(forward.rebuild).result()  # a swap: the new weights' trace is queued
        trace_gate.set()
        _until_traced(forward)
        worker.submit(lambda: None).result()  # every hand-over to the worker has run
    assert forward.graph.mode == "script"
    adopted = [r for r in caplog.records if "serving graph: script" in r.getMessage()]
    assert len(adopted) == 1  # the older trace finished first, and was dropped


def test_waiting_for_graphs_traces_before_ready() -> None:
    with ThreadPoolExecutor(1) as worker:
        forward = _traced_later(worker, wait=True)
        forward.prepare(4)
        assert forward.graph.mode == "script" and not forward.graph_pending
