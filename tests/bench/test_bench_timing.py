import pytest
import torch
from torch import nn

from torchgate_bench.timing import decode_ceiling, decode_seconds, forward_trials


def _tiny_convnet() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)
    ).eval()


class _DictOutput(nn.Module):
    """Runs eagerly, but tracing refuses a dict output: the script variant must fail softly."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"y": x.sum(dim=-1)}


def test_every_variant_thread_count_and_batch_size_is_timed_for_an_image_model() -> None:
    threads = torch.get_num_threads()
    trials, skipped = forward_trials(
        _tiny_convnet(), torch.randn(3, 16, 16), (1, 4), budget_s=3.0, thread_counts=(2, 1)
    )
    assert {(t.variant, t.threads, t.batch_size) for t in trials} == {
        (variant, count, size)
        for variant in ("eager", "script", "channels_last")
        for count in (2, 1)
        for size in (1, 4)
    }
    assert skipped == {}
    assert all(t.images_per_s > 0 for t in trials)
    assert torch.get_num_threads() == threads


def test_sequence_inputs_skip_channels_last_and_failures_are_reported() -> None:
    trials, skipped = forward_trials(_DictOutput(), torch.randn(28, 28), (1, 8), budget_s=0.2)
    assert {t.variant for t in trials} == {"eager"}
    assert list(skipped) == [f"script/{torch.get_num_threads()}t@1"]


def test_decode_is_timed_on_one_thread_and_threads_are_restored() -> None:
    threads = torch.get_num_threads()
    seen: list[int] = []
    seconds = decode_seconds(lambda: seen.append(torch.get_num_threads()), budget_s=0.05)
    assert seconds == pytest.approx(0, abs=0.05)
    assert set(seen) == {1}
    assert torch.get_num_threads() == threads


def test_fp16_variants_are_offered_for_cuda_runs_only() -> None:
    from torchgate_bench.timing import variants

    names = [name for name, _, _ in variants(_tiny_convnet(), torch.randn(3, 16, 16), False, True)]
    assert names == ["eager", "script", "eager fp16", "channels_last", "channels_last fp16"]
    trials, _ = forward_trials(
        _tiny_convnet(), torch.randn(3, 16, 16), (1,), budget_s=0.5, half=True
    )  # on the CPU, as the server: TORCHGATE_HALF is ignored there
    assert {t.variant for t in trials} == {"eager", "script", "channels_last"}


def test_the_decode_ceiling_runs_on_as_many_threads_as_the_pool() -> None:
    import threading
    import time

    seen: set[str] = set()

    def decode() -> None:
        seen.add(threading.current_thread().name)
        time.sleep(0.002)  # releases the GIL, as PIL's decoders do

    rate = decode_ceiling(decode, threads=3, budget_s=0.1)
    assert len(seen - {threading.current_thread().name}) == 3
    assert rate > 1 / 0.002  # more than one thread's worth
