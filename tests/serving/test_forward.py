import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from app.serving import forward as forward_module
from app.serving.checksum import parameters_sha256
from app.serving.faults import DeviceLost, DeviceOutOfMemory
from app.serving.forward import ModelForward
from app.serving.reinit import InitPlan, reinitialize


class _Recorder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)
        self.seen: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.shape[0])
        return self.linear(x)


def test_prepare_warms_up_before_serving() -> None:
    module = _Recorder().eval()
    forward = ModelForward(module, torch.device("cpu"), True, lambda b: (torch.randn(b, 4),))
    forward.prepare(max_batch_size=16)
    assert module.seen == [1]


def test_run_returns_cpu_probabilities() -> None:
    module = nn.Linear(4, 3).eval()
    forward = ModelForward(module, torch.device("cpu"), True, lambda b: (torch.randn(b, 4),))
    forward.prepare(2)
    out = forward.run([torch.randn(5, 4)])
    assert out.device.type == "cpu" and out.shape == (5, 3)
    assert torch.allclose(out.sum(1), torch.ones(5))
    raw = forward.run([torch.zeros(1, 4)], postprocess=False)
    assert torch.allclose(raw, module.bias.unsqueeze(0))


def test_frozen_graph_is_rebuilt_after_a_parameter_swap() -> None:
    module = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    forward = ModelForward(
        module, torch.device("cpu"), True, lambda b: (torch.randn(b, 4),), graph_mode="script"
    )
    forward.prepare(4)
    assert forward.graph.mode == "script"
    x = torch.randn(3, 4)
    before = forward.run([x])
    checksum = parameters_sha256(module)
    reinitialize(module, InitPlan(seed=5))
    assert parameters_sha256(module) != checksum
    forward.rebuild()
    after = forward.run([x])
    with torch.inference_mode():
        expected = module(x).softmax(1)
    assert torch.allclose(after, expected, atol=1e-6)
    assert not torch.allclose(before, after)


def test_half_precision_is_a_cuda_only_path() -> None:
    """On the CPU fallback TORCHGATE_HALF changes nothing: fp32 in, fp32 out, same numbers."""
    torch.manual_seed(0)
    module = nn.Linear(4, 3).eval()
    x = torch.randn(2, 4)
    plain = ModelForward(module, torch.device("cpu"), True, lambda b: (torch.randn(b, 4),))
    half = ModelForward(
        module,
        torch.device("cpu"),
        True,
        lambda b: (torch.randn(b, 4),),
        half=True,
        half_dtype=torch.bfloat16,
    )
    for forward in (plain, half):
        forward.prepare(2)
    out = half.run([x])
    assert out.dtype == torch.float32
    assert torch.equal(out, plain.run([x]))


def test_channels_last_inputs_on_the_cpu_fallback() -> None:
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(2)).eval()
    module(torch.randn(1, 3, 8, 8))
    x = torch.randn(2, 3, 8, 8)
    with torch.inference_mode():
        expected = module(x).softmax(1)
    forward = ModelForward(
        module,
        torch.device("cpu"),
        True,
        lambda b: (torch.randn(b, 3, 8, 8),),
        channels_last=True,
    )
    forward.prepare(2)
    assert forward.graph.channels_last
    assert torch.allclose(forward.run([x]), expected, atol=1e-6)


def test_a_models_thread_cap_applies_to_its_batches() -> None:

    module = nn.Linear(4, 3).eval()
    forward = ModelForward(
        module, torch.device("cpu"), True, lambda b: (torch.randn(b, 4),), cpu_threads=1
    )
    seen: list[int] = []
    original = torch.get_num_threads()

    def worker() -> None:
        torch.set_num_threads(2)
        forward.run([torch.randn(3, 4)])
        seen.append(torch.get_num_threads())

    try:
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
    finally:
        torch.set_num_threads(original)
    assert seen == [1]


class _Probe(nn.Module):
    """A conv net that records each call's batch size and cuDNN's autotuning flag."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3)
        self.seen: list[tuple[int, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((x.shape[0], torch.backends.cudnn.benchmark))
        return self.conv(x).mean((2, 3))


@pytest.fixture
def fake_cudnn(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """cuDNN's process-wide flags, as configure_backends leaves them on CUDA."""
    cudnn = SimpleNamespace(benchmark=True)
    monkeypatch.setattr(torch.backends, "cudnn", cudnn)
    return cudnn


def _fixed_shape_forward(module: nn.Module, max_batch_size: int = 8) -> ModelForward:
    """A forward with CUDA's shape rules, run on the CPU."""
    forward = ModelForward(
        module,
        torch.device("cpu"),
        True,
        lambda b: (torch.randn(b, 3, 8, 8),),
        fixed_shapes=True,
    )
    forward.prepare(max_batch_size)
    return forward


def test_fixed_shapes_pad_each_batch_to_a_warmed_size_and_slice_the_outputs(
    fake_cudnn: SimpleNamespace,
) -> None:
    torch.manual_seed(0)
    module = _Probe().eval()
    forward = _fixed_shape_forward(module, max_batch_size=24)
    assert [size for size, _ in module.seen] == [1, 2, 4, 8, 16, 24]  # warm-up, all tuned
    assert all(tuned for _, tuned in module.seen)
    module.seen.clear()
    x = torch.randn(5, 3, 8, 8)
    out = forward.run([x])
    with torch.inference_mode():
        expected = module.conv(x).mean((2, 3)).softmax(1)
    assert module.seen == [(8, True)]
    assert out.shape == (5, 2)
    assert torch.allclose(out, expected, atol=1e-6)
    forward.run([torch.randn(17, 3, 8, 8)])
    assert module.seen[-1] == (24, True)
    assert fake_cudnn.benchmark


def test_only_warmed_shapes_reach_cudnn_autotuning(fake_cudnn: SimpleNamespace) -> None:
    module = _Probe().eval()
    forward = _fixed_shape_forward(module, max_batch_size=8)
    module.seen.clear()
    forward.run([torch.randn(3, 3, 16, 12)])  # another height and width: no padding, no tuning
    forward.run([torch.randn(9, 3, 8, 8)])  # beyond the largest warmed batch (an evaluation)
    forward.run([torch.randn(2, 3, 8, 8)])
    assert module.seen == [(3, False), (9, False), (2, True)]
    assert fake_cudnn.benchmark  # restored after each call
    assert forward.batch_plan([torch.randn(3, 3, 16, 12)]) == (3, False)
    assert forward.batch_plan([torch.randn(7, 3, 8, 8)]) == (8, True)


def test_the_cpu_keeps_batches_as_they_come(fake_cudnn: SimpleNamespace) -> None:
    module = _Probe().eval()
    forward = ModelForward(module, torch.device("cpu"), True, lambda b: (torch.randn(b, 3, 8, 8),))
    forward.prepare(8)
    forward.run([torch.randn(3, 3, 8, 8)])
    forward.run([torch.randn(3, 3, 16, 16)])
    assert [size for size, _ in module.seen] == [1, 3, 3]
    assert all(flag for _, flag in module.seen)  # the CPU never touches cuDNN's flags


class _Failing(nn.Module):
    """Allocates an activation, then fails as the device would."""

    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message
        self.activations: list[weakref.ref[torch.Tensor]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activation = torch.ones(64, 1024)
        self.activations.append(weakref.ref(activation))
        raise RuntimeError(self.message)


def test_memory_is_freed_once_the_failed_batch_is_released(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = _Failing("cuDNN error: CUDNN_STATUS_ALLOC_FAILED").eval()
    freed_when_released: list[bool] = []
    monkeypatch.setattr(
        forward_module,
        "release_cached_memory",
        lambda device: freed_when_released.append(module.activations[-1]() is None),
    )
    forward = ModelForward(module, torch.device("cpu"), True, lambda b: (torch.randn(b, 4),))
    with pytest.raises(DeviceOutOfMemory, match="CUDNN_STATUS_ALLOC_FAILED"):
        forward.run([torch.randn(2, 4)])
    # empty_cache() ran after the activation was gone, not while a traceback still held it
    assert freed_when_released == [True]


def test_a_lost_device_is_reported_and_its_cache_left_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    released: list[torch.device] = []
    monkeypatch.setattr(forward_module, "release_cached_memory", released.append)
    module = _Failing("CUDA error: an illegal memory access was encountered").eval()
    forward = ModelForward(module, torch.device("cpu"), True, lambda b: (torch.randn(b, 4),))
    with pytest.raises(DeviceLost, match="illegal memory access"):
        forward.run([torch.randn(2, 4)])
    assert released == []
    shape_error = _Failing("mat1 and mat2 shapes cannot be multiplied").eval()
    forward = ModelForward(shape_error, torch.device("cpu"), True, lambda b: (torch.randn(b, 4),))
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        forward.run([torch.randn(2, 4)])  # not a device fault: raised as it came


class _ThreadsSeen(nn.Module):
    """Records the intra-op thread count each forward runs with."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)
        self.threads: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.threads.append(torch.get_num_threads())
        return self.linear(x)


def test_each_model_runs_with_its_own_thread_budget_on_a_shared_worker() -> None:
    """The cnn's one-thread cap must not stay behind for resnet101's next batch (they share
    the device worker thread, and torch's thread count belongs to the thread)."""
    small, large = _ThreadsSeen().eval(), _ThreadsSeen().eval()
    cpu = torch.device("cpu")
    capped = ModelForward(small, cpu, True, lambda b: (torch.randn(b, 4),), cpu_threads=1)
    budgeted = ModelForward(large, cpu, True, lambda b: (torch.randn(b, 4),), cpu_threads=2)
    previous = torch.get_num_threads()
    try:
        with ThreadPoolExecutor(1) as worker:  # one device worker, as in the registry
            for _ in range(3):
                worker.submit(capped.run, [torch.randn(2, 4)]).result()
                worker.submit(budgeted.run, [torch.randn(2, 4)]).result()
    finally:
        torch.set_num_threads(previous)
    assert small.threads == [1, 1, 1]
    assert large.threads == [2, 2, 2]
