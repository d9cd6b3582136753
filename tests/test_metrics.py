"""GPU memory gauges: read at scrape time, only for a CUDA device in use (torch.cuda faked)."""

import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families

from app.metrics import Metrics


def _gpu_samples(metrics: Metrics) -> dict[tuple[str, str], float]:
    text = metrics.render().decode()
    return {
        (sample.name, sample.labels["device"]): sample.value
        for family in text_string_to_metric_families(text)
        if family.name.startswith("torchgate_gpu_memory")
        for sample in family.samples
    }


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    state = {"allocated": 1024, "reserved": 4096, "current": 1, "initialized": 1}
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: bool(state["initialized"]))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: state["current"])
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: state["allocated"])
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: state["reserved"])
    return state


def test_gpu_memory_is_read_at_every_scrape(fake_cuda: dict[str, int]) -> None:
    metrics = Metrics(torch.device("cuda", 0))
    assert _gpu_samples(metrics) == {
        ("torchgate_gpu_memory_allocated_bytes", "cuda:0"): 1024,
        ("torchgate_gpu_memory_reserved_bytes", "cuda:0"): 4096,
    }
    fake_cuda["allocated"] = 2048
    assert _gpu_samples(metrics)[("torchgate_gpu_memory_allocated_bytes", "cuda:0")] == 2048


def test_an_unindexed_cuda_device_is_labelled_by_the_current_one(fake_cuda) -> None:
    assert set(_gpu_samples(Metrics(torch.device("cuda")))) == {
        ("torchgate_gpu_memory_allocated_bytes", "cuda:1"),
        ("torchgate_gpu_memory_reserved_bytes", "cuda:1"),
    }


def test_no_gpu_series_before_cuda_starts_or_on_cpu(fake_cuda: dict[str, int]) -> None:
    fake_cuda["initialized"] = 0
    assert _gpu_samples(Metrics(torch.device("cuda", 0))) == {}
    fake_cuda["initialized"] = 1
    assert _gpu_samples(Metrics(torch.device("cpu"))) == {}
    assert _gpu_samples(Metrics()) == {}
