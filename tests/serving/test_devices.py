import pytest
import torch

from app.errors import ConfigurationError
from app.serving.devices import resolve_device


def test_auto_picks_cuda_only_when_present(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("requested", ["cuda", "cuda:0", "cuda:3"])
def test_requesting_absent_cuda_is_a_clear_startup_error(
    monkeypatch: pytest.MonkeyPatch, requested: str
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigurationError, match="CUDA is not available"):
        resolve_device(requested)


def test_cuda_index_beyond_the_device_count_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigurationError, match="only 1 CUDA"):
        resolve_device("cuda:2")


def test_thread_budget_is_applied() -> None:
    from app.serving.devices import configure_threads

    before = torch.get_num_threads()
    try:
        configure_threads(1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
